//! Standalone activation layers: `Activation("softmax")`, `ReLU`, `LeakyReLU`, `Softmax`. No
//! parameters, `a = act(x)` (softmax over the last axis).

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::{invalid, Result};

use super::spec::{defaults, BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.Activation` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationConfig {
    #[serde(deserialize_with = "crate::activation::name_or_spec")]
    pub activation: Activation,
}

/// `keras.layers.ReLU`: `max(0, z)`, or a leaky ReLU with a `negative_slope`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReluConfig {
    #[serde(default)]
    pub negative_slope: f32,
}

/// `keras.layers.LeakyReLU`: `z` for `z > 0`, else `negative_slope * z` (default 0.01, as the
/// notes use).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakyReluConfig {
    #[serde(default = "leaky_slope")]
    pub negative_slope: f32,
}

fn leaky_slope() -> f32 {
    0.01
}

/// `keras.layers.Softmax` over the last axis, with an optional `temperature`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxConfig {
    #[serde(default = "defaults::last_axis")]
    pub axis: i64,
    #[serde(default = "one")]
    pub temperature: f32,
}

fn one() -> f32 {
    1.0
}

fn build_activation(ctx: &BuildContext<'_>, inputs: &[Vec<usize>], activation: Activation) -> Result<(Op, Vec<usize>)> {
    let shape = ctx.one_input(inputs)?;
    let layer = ActivationLayer {
        activation,
        per_sample: shape.iter().product(),
        last_axis: shape.last().copied().unwrap_or(1),
    };
    Ok((Op::unary(layer), shape.to_vec()))
}

impl BuildLayer for ActivationConfig {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        build_activation(ctx, inputs, self.activation)
    }
}

fn check_slope(layer: &str, name: &str, slope: f32) -> Result<()> {
    if slope.is_finite() {
        Ok(())
    } else {
        Err(invalid(format!("{layer} '{name}': negative_slope must be finite; got {slope}")))
    }
}

impl BuildLayer for ReluConfig {
    fn validate(&self, name: &str) -> Result<()> {
        check_slope("ReLU", name, self.negative_slope)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let act = if self.negative_slope == 0.0 {
            Activation::Relu
        } else {
            Activation::LeakyRelu { negative_slope: self.negative_slope }
        };
        build_activation(ctx, inputs, act)
    }
}

impl BuildLayer for LeakyReluConfig {
    fn validate(&self, name: &str) -> Result<()> {
        check_slope("LeakyReLU", name, self.negative_slope)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        build_activation(ctx, inputs, Activation::LeakyRelu { negative_slope: self.negative_slope })
    }
}

impl BuildLayer for SoftmaxConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if self.axis != -1 {
            return Err(invalid(format!("Softmax '{name}': only axis=-1 (the last axis) is supported")));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(invalid(format!("Softmax '{name}': temperature must be positive; got {}", self.temperature)));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        build_activation(ctx, inputs, Activation::Softmax { temperature: self.temperature })
    }
}

#[derive(Clone, Debug)]
pub struct ActivationLayer {
    pub activation: Activation,
    /// Values per sample.
    pub per_sample: usize,
    /// Length of the last axis: softmax normalises over it.
    pub last_axis: usize,
}

impl LayerKernel for ActivationLayer {
    fn final_activation(&self) -> Activation {
        self.activation
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let n = p.rows * self.per_sample;
        self.activation.forward_into(&p.input[..n], &mut p.output[..n], self.last_axis);
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let n = p.rows * self.per_sample;
        if let Some(dx) = p.grad_in {
            let dx = &mut dx[..n];
            dx.copy_from_slice(&p.grad_out[..n]);
            if !p.skip_activation {
                self.activation.backward(&p.input[..n], &p.output[..n], dx, self.last_axis);
            }
        }
    }
}
