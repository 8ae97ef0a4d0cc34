//! Flat parameter storage. Every trainable tensor of a network lives in one `Vec<f32>` with its
//! gradient beside it in a second one, so an optimizer step is one fused sweep over two buffers
//! (and, later, clipping and weight decay in the same pass), with no per-tensor locking.

use std::cell::Cell;

use ndarray::ArrayViewD;

use crate::error::{invalid, Error, Result};
use crate::regularizer::Regularizer;

/// Values one tensor, or a whole store, may hold: `Vec<f32>`'s own bound (`isize::MAX` bytes).
pub const MAX_VALUES: usize = isize::MAX as usize / std::mem::size_of::<f32>();

thread_local! {
    /// At most this many values for stores filled on this thread (see [`with_budget`]).
    static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Limits every store filled on this thread from now on to `budget` values (`None`: no limit)
/// and returns the previous limit, for the caller to restore. Loading a file sets it to the
/// values the file holds, so its architecture cannot ask for more memory than its weights
/// justify: the excess is refused before anything is allocated.
pub fn set_budget(budget: Option<usize>) -> Option<usize> {
    BUDGET.with(|b| b.replace(budget))
}

/// Values of a tensor of `shape`, or `None` when the product overflows or exceeds [`MAX_VALUES`].
pub fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_VALUES)
}

/// What a tensor is for: decoupled weight decay and regularizers treat kernels and biases apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Kernel,
    Bias,
    /// Scale and offset of a normalization layer (trained, never decayed).
    Norm,
    /// Not trained: moving statistics. Their gradient stays zero, so no update rule moves them.
    NonTrainable,
}

/// One named tensor inside the flat buffers.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub role: Role,
    /// Penalty added to the loss for this tensor, if any.
    pub regularizer: Option<Regularizer>,
    /// `false` when its layer is frozen (Keras `layer.trainable = False`): no update, no weight
    /// decay, no optimizer-slot change and no regularization penalty.
    pub trainable: bool,
}

impl Tensor {
    /// Values of the tensor (saturating: a tensor too large to store never got storage).
    pub fn len(&self) -> usize {
        checked_len(&self.shape).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.len())
    }
}

/// The values and gradients of every parameter of a network.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    pub values: Vec<f32>,
    pub grads: Vec<f32>,
    pub tensors: Vec<Tensor>,
    /// Tensors are recorded without storage (shape inference).
    dry: bool,
    /// Why a tensor got no storage; building stops there ([`ParamStore::check`]).
    failure: Option<Error>,
}

impl ParamStore {
    /// A store that records tensors but allocates nothing: for shapes only.
    pub fn dry() -> Self {
        Self { dry: true, ..Self::default() }
    }

    /// Reserves a tensor and returns its index; storage grows with it (filled with zeros). A
    /// tensor too large, or whose memory cannot be had, gets no storage and the store remembers
    /// why: builders call [`ParamStore::check`] after each layer, and fills skip such tensors.
    pub fn register(&mut self, name: String, shape: Vec<usize>, role: Role) -> usize {
        let offset = self.values.len();
        let t = Tensor { name, shape, offset, role, regularizer: None, trainable: true };
        if !self.dry && self.failure.is_none() {
            if let Err(e) = self.grow(&t) {
                self.failure = Some(e);
            }
        }
        self.tensors.push(t);
        self.tensors.len() - 1
    }

    fn grow(&mut self, t: &Tensor) -> Result<()> {
        let too_large = || invalid(format!("weight '{}' of shape {:?} is too large", t.name, t.shape));
        let len = checked_len(&t.shape).ok_or_else(too_large)?;
        let total = self.values.len().checked_add(len).filter(|&n| n <= MAX_VALUES).ok_or_else(too_large)?;
        if let Some(budget) = BUDGET.with(Cell::get).filter(|&b| total > b) {
            return Err(invalid(format!(
                "the architecture asks for more weights than the {budget} values stored (weight '{}' of \
                 shape {:?} brings it to {total})",
                t.name, t.shape
            )));
        }
        let bytes = len.saturating_mul(2 * std::mem::size_of::<f32>());
        self.values.try_reserve_exact(len).and_then(|_| self.grads.try_reserve_exact(len)).map_err(|_| {
            Error::OutOfMemory(format!("cannot allocate {bytes} bytes for weight '{}' of shape {:?}", t.name, t.shape))
        })?;
        self.values.resize(total, 0.0);
        self.grads.resize(total, 0.0);
        Ok(())
    }

    /// The first tensor that got no storage, as an error (a layer too large for memory).
    pub fn check(&self) -> Result<()> {
        self.failure.clone().map_or(Ok(()), Err)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Tensor `i` as an array of its shape: a view into the flat store.
    pub fn view(&self, i: usize) -> Option<ArrayViewD<'_, f32>> {
        let t = self.tensors.get(i)?;
        Some(
            ArrayViewD::from_shape(t.shape.as_slice(), &self.values[t.range()])
                .expect("a tensor's shape fits its range"),
        )
    }

    /// Checks that `value` has the shape of tensor `i`.
    fn check_shape(&self, i: usize, value: &ArrayViewD<'_, f32>) -> Result<()> {
        let t = self.tensors.get(i).ok_or_else(|| invalid(format!("no weight #{i}")))?;
        if value.shape() != t.shape.as_slice() {
            return Err(invalid(format!(
                "weight '{}' has shape {:?}; got an array of shape {:?}",
                t.name,
                t.shape,
                value.shape()
            )));
        }
        Ok(())
    }

    /// Replaces tensor `i` with `value` (same shape, any layout).
    pub fn set_tensor(&mut self, i: usize, value: &ArrayViewD<'_, f32>) -> Result<()> {
        self.check_shape(i, value)?;
        let range = self.tensors[i].range();
        let dst = &mut self.values[range];
        match value.as_slice() {
            Some(src) => dst.copy_from_slice(src),
            None => dst.iter_mut().zip(value.iter()).for_each(|(d, &v)| *d = v),
        }
        Ok(())
    }

    /// Replaces every tensor, in order. Every shape is checked before anything is written, so
    /// on error nothing changes.
    pub fn set_all(&mut self, values: &[ArrayViewD<'_, f32>]) -> Result<()> {
        if values.len() != self.tensors.len() {
            return Err(invalid(format!("expected {} weight arrays; got {}", self.tensors.len(), values.len())));
        }
        for (i, v) in values.iter().enumerate() {
            self.check_shape(i, v)?;
        }
        for (i, v) in values.iter().enumerate() {
            self.set_tensor(i, v)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Freezes (`false`) or unfreezes (`true`) the tensors with indices in `tensors` (for example
    /// all of one layer's), as Keras' `layer.trainable = ...`.
    pub fn set_trainable(&mut self, tensors: std::ops::Range<usize>, trainable: bool) {
        self.tensors[tensors].iter_mut().for_each(|t| t.trainable = trainable);
    }

    /// Zeroes the gradients of frozen tensors (`trainable == false`). The model calls it after
    /// every backward pass (before regularizers, which skip frozen tensors anyway), so that every
    /// consumer of `grads` sees no gradient there: L-BFGS, which runs over the whole vector and so
    /// leaves a tensor with zero gradient where it is, gradient monitors, and the optimizers (which
    /// skip frozen tensors on their own).
    pub fn zero_frozen_grads(&mut self) {
        for t in self.tensors.iter().filter(|t| !t.trainable) {
            self.grads[t.range()].fill(0.0);
        }
    }

    /// Adds every regularizer's gradient to `grads`; returns the total penalty. Frozen tensors
    /// add neither (Keras 3 counts the regularizers of trainable weights only).
    pub fn apply_regularizers(&mut self) -> f64 {
        let mut penalty = 0.0;
        for t in self.tensors.iter().filter(|t| t.trainable) {
            if let Some(r) = t.regularizer {
                let range = t.range();
                penalty += r.penalty(&self.values[range.clone()]);
                r.add_gradient(&self.values[range.clone()], &mut self.grads[range]);
            }
        }
        penalty
    }

    /// The total penalty of the regularizers of trainable tensors, without gradients (for
    /// evaluation).
    pub fn penalty(&self) -> f64 {
        self.tensors
            .iter()
            .filter(|t| t.trainable)
            .filter_map(|t| t.regularizer.map(|r| r.penalty(&self.values[t.range()])))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_refused_without_storage() {
        let mut s = ParamStore::default();
        s.register("a/kernel".into(), vec![2, 3], Role::Kernel);
        assert!(s.check().is_ok());
        // 2**62 * 8 wraps to 0 in plain arithmetic.
        let i = s.register("b/kernel".into(), vec![8, 1 << 62], Role::Kernel);
        assert!(matches!(s.check(), Err(Error::InvalidArgument(m)) if m.contains("too large")));
        assert_eq!((s.values.len(), s.grads.len()), (6, 6));
        assert!(s.values.get(s.tensors[i].range()).is_none());

        let mut s = ParamStore::default();
        s.register("c/kernel".into(), vec![1 << 40, 1 << 20], Role::Kernel);
        assert!(matches!(s.check(), Err(Error::OutOfMemory(_) | Error::InvalidArgument(_))));
        assert!(s.values.is_empty());
    }

    #[test]
    fn a_budget_refuses_more_values_before_allocating_and_a_dry_store_allocates_nothing() {
        let previous = set_budget(Some(10));
        let mut s = ParamStore::default();
        s.register("a/kernel".into(), vec![2, 4], Role::Kernel);
        s.register("a/bias".into(), vec![4], Role::Bias);
        set_budget(previous);
        assert!(matches!(s.check(), Err(Error::InvalidArgument(m)) if m.contains("more weights than the 10")));
        assert_eq!(s.values.len(), 8);

        let mut d = ParamStore::dry();
        d.register("big/kernel".into(), vec![1 << 30, 1 << 10], Role::Kernel);
        assert!(d.check().is_ok() && d.values.is_empty() && d.tensors[0].shape == [1 << 30, 1 << 10]);
    }
}
