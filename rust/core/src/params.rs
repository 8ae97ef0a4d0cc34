//! Flat parameter storage. Every trainable tensor of a network lives in one `Vec<f32>` with its
//! gradient beside it in a second one, so an optimizer step is one fused sweep over two buffers
//! (and, later, clipping and weight decay in the same pass), with no per-tensor locking.

use ndarray::ArrayViewD;

use crate::error::{invalid, Result};
use crate::regularizer::Regularizer;

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
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The values and gradients of every parameter of a network.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    pub values: Vec<f32>,
    pub grads: Vec<f32>,
    pub tensors: Vec<Tensor>,
}

impl ParamStore {
    /// Reserves a tensor and returns its index; storage grows with it (filled with zeros).
    pub fn register(&mut self, name: String, shape: Vec<usize>, role: Role) -> usize {
        let offset = self.values.len();
        let t = Tensor { name, shape, offset, role, regularizer: None, trainable: true };
        self.values.resize(offset + t.len(), 0.0);
        self.grads.resize(offset + t.len(), 0.0);
        self.tensors.push(t);
        self.tensors.len() - 1
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
