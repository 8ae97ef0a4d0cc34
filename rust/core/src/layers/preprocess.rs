//! Preprocessing layers that travel with the model (note 000 "buenas prácticas": the scaler is
//! fitted on the training data and kept for production):
//!
//! - `Rescaling(scale, offset)`: `y = x scale + offset` (e.g. `1/255`)
//! - `Normalization`: z-score per feature (last axis; per channel for images),
//!   `y = (x - mean) / max(sqrt(variance), 1e-7)`, statistics set by `adapt`
//! - `MinMaxNormalization`: `y = (x - min) / max(max - min, 1e-7)` into `[0, 1]`, set by `adapt`
//!
//! The statistics are non-trained weights, so `get_weights`, saving and loading carry them.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::params::{ParamStore, Role};

use super::spec::{check_last_axis, defaults, BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.Rescaling` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RescalingConfig {
    pub scale: f32,
    #[serde(default)]
    pub offset: f32,
}

/// `keras.layers.Normalization` (`MIN_MAX = false`) and `MinMaxNormalization` arguments: the
/// axis of the per-feature statistics (the last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveConfig<const MIN_MAX: bool> {
    #[serde(default = "defaults::last_axis")]
    pub axis: i64,
}

pub type NormalizationConfig = AdaptiveConfig<false>;
pub type MinMaxNormalizationConfig = AdaptiveConfig<true>;

impl BuildLayer for RescalingConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if !(self.scale.is_finite() && self.offset.is_finite()) {
            return Err(invalid(format!("Rescaling '{name}': scale and offset must be finite")));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?;
        Ok((Op::unary(Scale::rescaling(shape, self.scale, self.offset)), shape.to_vec()))
    }
}

impl<const MIN_MAX: bool> BuildLayer for AdaptiveConfig<MIN_MAX> {
    fn validate(&self, name: &str) -> Result<()> {
        check_last_axis(if MIN_MAX { "MinMaxNormalization" } else { "Normalization" }, name, self.axis)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?.to_vec();
        Ok((Op::unary(Scale::adaptive(ctx.name, &shape, MIN_MAX, ctx.params)?), shape))
    }
}

const FLOOR: f32 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleKind {
    Rescale { scale: f32, offset: f32 },
    ZScore { mean: usize, variance: usize },
    MinMax { min: usize, max: usize },
}

#[derive(Clone, Debug)]
pub struct Scale {
    pub kind: ScaleKind,
    pub channels: usize,
    pub per_sample: usize,
}

impl Scale {
    pub fn rescaling(input_shape: &[usize], scale: f32, offset: f32) -> Self {
        Self {
            kind: ScaleKind::Rescale { scale, offset },
            channels: input_shape.last().copied().unwrap_or(1),
            per_sample: input_shape.iter().product(),
        }
    }

    /// A z-score (`min_max = false`) or min-max normalization with per-channel statistics
    /// registered as non-trained weights (`mean`/`variance` start at 0/1, `min`/`max` at 0/1).
    pub fn adaptive(name: &str, input_shape: &[usize], min_max: bool, params: &mut ParamStore) -> Result<Self> {
        let Some(&channels) = input_shape.last() else {
            return Err(invalid(format!("normalization layer '{name}' needs a non-empty input shape")));
        };
        let mut reg = |what: &str, value: f32| {
            let i = params.register(format!("{name}/{what}"), vec![channels], Role::NonTrainable);
            let r = params.tensors[i].range();
            if let Some(v) = params.values.get_mut(r) {
                v.fill(value);
            }
            params.tensors[i].offset
        };
        let kind = if min_max {
            ScaleKind::MinMax { min: reg("min", 0.0), max: reg("max", 1.0) }
        } else {
            ScaleKind::ZScore { mean: reg("mean", 0.0), variance: reg("variance", 1.0) }
        };
        Ok(Self { kind, channels, per_sample: input_shape.iter().product() })
    }

    /// `(a, b)` of `y = a x + b` for channel `ch`.
    #[inline]
    fn coefficients(&self, params: &[f32], ch: usize) -> (f32, f32) {
        match self.kind {
            ScaleKind::Rescale { scale, offset } => (scale, offset),
            ScaleKind::ZScore { mean, variance } => {
                let a = 1.0 / params[variance + ch].max(0.0).sqrt().max(FLOOR);
                (a, -params[mean + ch] * a)
            }
            ScaleKind::MinMax { min, max } => {
                let a = 1.0 / (params[max + ch] - params[min + ch]).max(FLOOR);
                (a, -params[min + ch] * a)
            }
        }
    }
}

impl LayerKernel for Scale {
    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { params, input, output, rows, .. } = p;
        let (n, c) = (rows * self.per_sample, self.channels);
        for (xr, yr) in input[..n].chunks_exact(c).zip(output[..n].chunks_exact_mut(c)) {
            for ch in 0..c {
                let (a, b) = self.coefficients(params, ch);
                yr[ch] = a * xr[ch] + b;
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let (n, c) = (p.rows * self.per_sample, self.channels);
        for (dr, gr) in dx[..n].chunks_exact_mut(c).zip(p.grad_out[..n].chunks_exact(c)) {
            for ch in 0..c {
                dr[ch] = self.coefficients(p.params, ch).0 * gr[ch];
            }
        }
    }
}
