//! Fully connected layer: `a = act(x W + b)` with kernel `W` of shape `(in, units)` (Keras order).
//! Under the `mixed_bfloat16` policy its three matrix products take bf16-rounded operands and sum
//! in f32 ([`gemm_bf16`]); the bias, the activation and the weights stay f32.
//!
//! Backward (note 002 "backpropagation en forma matricial"), for a batch `X` (rows x in):
//! `dZ = dA ⊙ act'(Z)`, `dW = Xᵀ dZ`, `db = sum_rows dZ`, `dX = dZ Wᵀ`.

use serde::{Deserialize, Serialize};

use crate::activation::{for_each_row, Activation};
use crate::error::{invalid, Result};
use crate::gemm::{bf16_native, gemm, gemm_bf16, MatRef};
use crate::params::{ParamStore, Role};

use super::spec::{BuildContext, BuildLayer, DTypePolicy, KernelArgs};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.Dense` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    pub units: usize,
    #[serde(flatten)]
    pub kernel: KernelArgs,
    #[serde(default)]
    pub dtype: DTypePolicy,
}

impl DenseConfig {
    /// `units` outputs with `activation` and Keras' defaults for the rest.
    pub fn new(units: usize, activation: Activation) -> Self {
        Self { units, kernel: KernelArgs::new(activation), dtype: DTypePolicy::Float32 }
    }
}

impl BuildLayer for DenseConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if self.units == 0 {
            return Err(invalid(format!("Dense '{name}': units must be a positive integer")));
        }
        self.kernel.validate()
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let input = ctx.one_input(inputs)?;
        let k = &self.kernel;
        let mut d = Dense::build(ctx.name, input, self.units, k.activation, k.use_bias, ctx.params)?;
        // Without the instructions the policy falls back to f32 (the Python side warns).
        d.bf16 = self.dtype == DTypePolicy::MixedBfloat16 && bf16_native();
        k.init(ctx, d.kernel, d.bias);
        Ok((Op::unary(d), vec![self.units]))
    }
}

/// A built Dense layer: its sizes and where its tensors live in the parameter store.
#[derive(Clone, Debug)]
pub struct Dense {
    pub in_dim: usize,
    pub units: usize,
    pub activation: Activation,
    /// Index of the kernel tensor in the store.
    pub kernel: usize,
    /// Index of the bias tensor, when the layer has one.
    pub bias: Option<usize>,
    /// Products on bf16 operands ([`gemm_bf16`]) rather than f32.
    pub bf16: bool,
    kernel_offset: usize,
    bias_offset: Option<usize>,
}

impl Dense {
    pub fn build(
        name: &str,
        input_shape: &[usize],
        units: usize,
        activation: Activation,
        use_bias: bool,
        params: &mut ParamStore,
    ) -> Result<Self> {
        let &[in_dim] = input_shape else {
            return Err(invalid(format!(
                "Dense '{name}' expects a flat input of shape (features,); got per-sample shape {input_shape:?}"
            )));
        };
        if in_dim == 0 {
            return Err(invalid(format!("Dense '{name}': input has zero features")));
        }
        let kernel = params.register(format!("{name}/kernel"), vec![in_dim, units], Role::Kernel);
        let bias = use_bias.then(|| params.register(format!("{name}/bias"), vec![units], Role::Bias));
        Ok(Self {
            in_dim,
            units,
            activation,
            kernel,
            bias,
            bf16: false,
            kernel_offset: params.tensors[kernel].offset,
            bias_offset: bias.map(|b| params.tensors[b].offset),
        })
    }

    fn w<'p>(&self, params: &'p [f32]) -> &'p [f32] {
        &params[self.kernel_offset..self.kernel_offset + self.in_dim * self.units]
    }

    /// `C = A B` in this layer's precision.
    fn product(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
        if self.bf16 {
            gemm_bf16(a, b, 0.0, c)
        } else {
            gemm(a, b, 0.0, c)
        }
    }
}

impl LayerKernel for Dense {
    /// Values per sample this layer keeps for backward besides its output: the pre-activation
    /// `z`, only when the activation's derivative needs it.
    fn saved_width(&self) -> usize {
        if self.activation.needs_input() {
            self.units
        } else {
            0
        }
    }

    fn final_activation(&self) -> Activation {
        self.activation
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { params, input, output, saved, rows, keep, .. } = p;
        let (n_in, n_out) = (self.in_dim, self.units);
        let bias = self.bias_offset.map(|o| &params[o..o + n_out]);
        let act = self.activation;
        let x = MatRef::row_major(&input[..rows * n_in], rows, n_in);
        let w = MatRef::row_major(self.w(params), n_in, n_out);
        if keep && act.needs_input() {
            // The derivative needs z: keep it in `saved`, write a = f(z) to `output`.
            let z = &mut saved[..rows * n_out];
            self.product(x, w, z);
            if let Some(b) = bias {
                for_each_row(z, n_out, |_, row| row.iter_mut().zip(b).for_each(|(v, b)| *v += b));
            }
            let out = &mut output[..rows * n_out];
            out.copy_from_slice(z);
            act.forward(out, n_out);
            return;
        }
        let z = &mut output[..rows * n_out];
        self.product(x, w, z);
        if bias.is_none() && act == Activation::Linear {
            return;
        }
        // Bias and activation in one pass over the output while it is still in cache.
        for_each_row(z, n_out, |_, row| {
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            act.forward_row(row);
        });
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let (rows, n_in, n_out) = (p.rows, self.in_dim, self.units);
        let dz = &mut p.grad_out[..rows * n_out];
        if !p.skip_activation {
            self.activation.backward(p.saved, &p.output[..rows * n_out], dz, n_out);
        }
        let dz: &[f32] = dz;
        let x = MatRef::row_major(&p.input[..rows * n_in], rows, n_in);
        let dzm = MatRef::row_major(dz, rows, n_out);
        let ko = self.kernel_offset;
        self.product(x.t(), dzm, &mut p.grads[ko..ko + n_in * n_out]);
        if let Some(bo) = self.bias_offset {
            let db = &mut p.grads[bo..bo + n_out];
            db.fill(0.0);
            for row in dz.chunks_exact(n_out) {
                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
        }
        if let Some(dx) = p.grad_in {
            let w = MatRef::row_major(self.w(p.params), n_in, n_out);
            self.product(dzm, w.t(), &mut dx[..rows * n_in]);
        }
    }
}
