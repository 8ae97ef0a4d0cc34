//! Parametric ReLU (He et al. 2015; note 000 "Leaky/Parametric ReLU"): `a = x` for `x > 0`, else
//! `alpha x`, with one learnable `alpha` per unit (shared along `shared_axes`), initialised to
//! 0.25 as in the paper and in PyTorch (Keras' default is 0).
//!
//! Backward: `dx = g` or `alpha g`; `d alpha = sum over the batch (and shared axes) of x g` where
//! `x <= 0`.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::params::{ParamStore, Role};
use crate::regularizer::Regularizer;

use super::spec::{validate_regularizer, BuildContext, BuildLayer, InitSpec};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.PReLU` arguments (`shared_axes` 1-based, as in Keras).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PReluConfig {
    #[serde(default = "quarter")]
    pub alpha_initializer: InitSpec,
    #[serde(default)]
    pub shared_axes: Option<Vec<usize>>,
    #[serde(default, deserialize_with = "crate::regularizer::keras_or_engine")]
    pub alpha_regularizer: Option<Regularizer>,
}

fn quarter() -> InitSpec {
    InitSpec::constant(0.25)
}

impl BuildLayer for PReluConfig {
    fn validate(&self, _name: &str) -> Result<()> {
        validate_regularizer(&self.alpha_regularizer)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?.to_vec();
        let l = PRelu::build(ctx.name, &shape, self.shared_axes.as_deref().unwrap_or(&[]), ctx.params)?;
        ctx.init_weight(l.alpha, &self.alpha_initializer, self.alpha_regularizer);
        Ok((Op::unary(l), shape))
    }
}

#[derive(Clone, Debug)]
pub struct PRelu {
    /// Index of the alpha tensor in the store.
    pub alpha: usize,
    alpha_offset: usize,
    /// For each value of a sample, the index of its alpha.
    alpha_index: Vec<u32>,
    alpha_len: usize,
    per_sample: usize,
}

impl PRelu {
    /// `shared_axes` are 1-based per-sample axes (Keras' convention: axis 0 is the batch).
    pub fn build(name: &str, input_shape: &[usize], shared_axes: &[usize], params: &mut ParamStore) -> Result<Self> {
        let mut alpha_shape = input_shape.to_vec();
        for &ax in shared_axes {
            if ax == 0 || ax > input_shape.len() {
                return Err(invalid(format!(
                    "PReLU '{name}': shared axis {ax} out of range for input shape {input_shape:?} (axes are 1-based)"
                )));
            }
            alpha_shape[ax - 1] = 1;
        }
        // The alpha value each input value uses: alpha broadcast along the shared axes.
        let alpha_index = super::broadcast::offsets(&alpha_shape, input_shape);
        let per_sample: usize = input_shape.iter().product();
        let alpha = params.register(format!("{name}/alpha"), alpha_shape, Role::Kernel);
        let t = &params.tensors[alpha];
        Ok(Self { alpha, alpha_offset: t.offset, alpha_index, alpha_len: t.len(), per_sample })
    }
}

impl LayerKernel for PRelu {
    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { params, input, output, rows, .. } = p;
        let alpha = &params[self.alpha_offset..];
        let n = self.per_sample;
        for (xr, ar) in input[..rows * n].chunks_exact(n).zip(output[..rows * n].chunks_exact_mut(n)) {
            for ((a, &x), &k) in ar.iter_mut().zip(xr).zip(&self.alpha_index) {
                *a = if x > 0.0 { x } else { alpha[k as usize] * x };
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let n = self.per_sample;
        let alpha_len = self.alpha_len;
        let dalpha = &mut p.grads[self.alpha_offset..self.alpha_offset + alpha_len];
        dalpha.fill(0.0);
        let alpha = &p.params[self.alpha_offset..self.alpha_offset + alpha_len];
        let rows = p.rows;
        for r in 0..rows {
            let x = &p.input[r * n..(r + 1) * n];
            let g = &p.grad_out[r * n..(r + 1) * n];
            for j in 0..n {
                if x[j] <= 0.0 {
                    dalpha[self.alpha_index[j] as usize] += x[j] * g[j];
                }
            }
        }
        if let Some(dx) = p.grad_in {
            for r in 0..rows {
                let x = &p.input[r * n..(r + 1) * n];
                let g = &p.grad_out[r * n..(r + 1) * n];
                let d = &mut dx[r * n..(r + 1) * n];
                for j in 0..n {
                    d[j] = if x[j] > 0.0 { g[j] } else { alpha[self.alpha_index[j] as usize] * g[j] };
                }
            }
        }
    }
}
