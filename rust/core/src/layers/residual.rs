//! Residual block (He et al. 2016; note 004 "conexiones residuales"): `y = F(x) + S(x)` with `F`
//! a chain of layers and `S` the identity or a projection (e.g. a 1x1 Conv2D when the shapes
//! change). The identity path gives the gradient a route around `F`, so deep stacks keep
//! learning where plain ones see their gradients vanish.
//!
//! Backward: `dx = dF/dx^T g + dS/dx^T g` (`+ g` for the identity).

use crate::chain::{width, Chain, Workspace};
use crate::error::{invalid, Result};
use crate::params::ParamStore;

use super::{BackwardPass, ForwardPass, LayerSpec};

#[derive(Clone, Debug)]
pub struct Residual {
    pub block: Chain,
    /// Empty for the identity shortcut.
    pub shortcut: Chain,
    in_width: usize,
    out_width: usize,
}

impl Residual {
    pub fn build(
        name: &str,
        layers: &[LayerSpec],
        shortcut: Option<&LayerSpec>,
        input_shape: &[usize],
        params: &mut ParamStore,
        seed: u64,
    ) -> Result<(Self, Vec<usize>)> {
        if layers.is_empty() {
            return Err(invalid(format!("Residual '{name}': the block needs at least one layer")));
        }
        let block = Chain::build(layers, input_shape, params, seed)?;
        let shortcut = Chain::build(shortcut.map(std::slice::from_ref).unwrap_or(&[]), input_shape, params, seed)?;
        let (out, short) = (block.output_shape(input_shape).to_vec(), shortcut.output_shape(input_shape).to_vec());
        if out != short {
            return Err(invalid(format!(
                "Residual '{name}': the block outputs shape {out:?} but the shortcut gives {short:?}; \
                 pass a shortcut layer that projects to the block's shape (e.g. a 1x1 Conv2D or a Dense)"
            )));
        }
        let r = Self { block, shortcut, in_width: width(input_shape), out_width: width(&out) };
        Ok((r, out))
    }

    /// Branch workspaces: the block's, then the shortcut's.
    pub fn workspaces(&self, _rows: usize) -> Vec<Workspace> {
        vec![Workspace::default(), Workspace::default()]
    }

    /// Scratch for the projection shortcut's input gradient.
    pub fn saved_width(&self) -> usize {
        if self.shortcut.layers.is_empty() {
            0
        } else {
            self.in_width
        }
    }

    pub fn forward(&self, p: ForwardPass<'_>) {
        let n = p.rows * self.out_width;
        let (wb, ws) = p.nested.split_at_mut(1);
        self.block.forward(p.params, &mut wb[0], p.input, p.rows, p.training, p.rng);
        let f = &wb[0].outputs.last().expect("non-empty block")[..n];
        let y = &mut p.output[..n];
        if self.shortcut.layers.is_empty() {
            y.iter_mut().zip(f).zip(&p.input[..n]).for_each(|((y, a), b)| *y = a + b);
        } else {
            self.shortcut.forward(p.params, &mut ws[0], p.input, p.rows, p.training, p.rng);
            let s = &ws[0].outputs.last().expect("non-empty shortcut")[..n];
            y.iter_mut().zip(f).zip(s).for_each(|((y, a), b)| *y = a + b);
        }
    }

    pub fn backward(&self, p: BackwardPass<'_>) {
        let (rows, n) = (p.rows, p.rows * self.out_width);
        let g = &p.grad_out[..n];
        let (wb, ws) = p.nested.split_at_mut(1);
        wb[0].grads.last_mut().expect("non-empty block")[..n].copy_from_slice(g);
        let mut grad_in = p.grad_in;
        self.block.backward(p.params, p.grads, &mut wb[0], p.input, grad_in.as_deref_mut(), rows, false, p.training);
        if self.shortcut.layers.is_empty() {
            if let Some(dx) = grad_in {
                dx[..n].iter_mut().zip(g).for_each(|(d, g)| *d += g);
            }
            return;
        }
        ws[0].grads.last_mut().expect("non-empty shortcut")[..n].copy_from_slice(g);
        let m = rows * self.in_width;
        let scratch = grad_in.as_ref().map(|_| &mut p.saved[..m]);
        self.shortcut.backward(p.params, p.grads, &mut ws[0], p.input, scratch, rows, false, p.training);
        if let Some(dx) = grad_in {
            dx[..m].iter_mut().zip(&p.saved[..m]).for_each(|(d, s)| *d += s);
        }
    }
}
