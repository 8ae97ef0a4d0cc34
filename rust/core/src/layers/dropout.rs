//! Regularizing layers that act only in training (note 002 "Dropout", note 004 "noise"):
//!
//! - `Dropout(rate)`: inverted dropout, each value kept with probability `1 - rate` and scaled by
//!   `1 / (1 - rate)`, so inference is the identity. Note 002 also describes the original form
//!   (no scaling in training, outputs multiplied by `1 - rate` at inference): both give the same
//!   expected activation; the inverted one leaves inference untouched.
//! - `SpatialDropout2D(rate)`: the same, with one draw per (sample, channel) shared by every
//!   position of the feature map (whole channels dropped).
//! - `GaussianNoise(stddev)`: adds `N(0, stddev^2)` noise in training; identity in inference.
//!
//! The mask of each training pass is kept for backward (`dx = g * mask`).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::rng::Stream;

use super::spec::{BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.Dropout` (`SPATIAL = false`) and `SpatialDropout2D` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutArgs<const SPATIAL: bool> {
    pub rate: f32,
}

pub type DropoutConfig = DropoutArgs<false>;
pub type SpatialDropout2DConfig = DropoutArgs<true>;

/// `keras.layers.GaussianNoise` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianNoiseConfig {
    pub stddev: f32,
}

impl<const SPATIAL: bool> BuildLayer for DropoutArgs<SPATIAL> {
    fn validate(&self, name: &str) -> Result<()> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(invalid(format!("dropout layer '{name}': rate must be in [0, 1); got {}", self.rate)));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?;
        let rate = self.rate;
        let kind = match *shape {
            _ if !SPATIAL => NoiseKind::Dropout { rate },
            [_, _, channels] => NoiseKind::SpatialDropout { rate, channels },
            _ => {
                return Err(invalid(format!(
                    "SpatialDropout2D '{}' expects (height, width, channels); got {shape:?}",
                    ctx.name
                )))
            }
        };
        Ok((Op::unary(Noise { kind, per_sample: shape.iter().product() }), shape.to_vec()))
    }
}

impl BuildLayer for GaussianNoiseConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if !(self.stddev.is_finite() && self.stddev >= 0.0) {
            return Err(invalid(format!("GaussianNoise '{name}': stddev must be >= 0; got {}", self.stddev)));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?;
        let kind = NoiseKind::Gaussian { stddev: self.stddev };
        Ok((Op::unary(Noise { kind, per_sample: shape.iter().product() }), shape.to_vec()))
    }
}

/// Values per independently seeded chunk of a dropout mask.
const MASK_CHUNK: usize = 1 << 13;

/// Chunk index, then matching chunks of the mask, the output and the input.
type MaskChunk<'a> = (usize, ((&'a mut [f32], &'a mut [f32]), &'a [f32]));

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseKind {
    Dropout { rate: f32 },
    SpatialDropout { rate: f32, channels: usize },
    Gaussian { stddev: f32 },
}

#[derive(Clone, Debug)]
pub struct Noise {
    pub kind: NoiseKind,
    pub per_sample: usize,
}

impl Noise {}

impl LayerKernel for Noise {
    fn saved_width(&self) -> usize {
        match self.kind {
            NoiseKind::Gaussian { .. } => 0,
            _ => self.per_sample,
        }
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { input, output, saved, rows, training, rng, .. } = p;
        let n = rows * self.per_sample;
        let (x, y) = (&input[..n], &mut output[..n]);
        if !training {
            y.copy_from_slice(x);
            return;
        }
        match self.kind {
            NoiseKind::Dropout { rate } => {
                let keep = 1.0 / (1.0 - rate);
                // One draw from the layer's stream seeds the batch; each fixed chunk of the batch
                // gets its own stream from it, so masks are drawn in parallel and are the same
                // whatever the thread count.
                let batch_seed = rng.next_u64();
                let body = |(i, ((m, y), x)): MaskChunk<'_>| {
                    let mut s = Stream::new(batch_seed, i as u64);
                    for ((m, y), &x) in m.iter_mut().zip(y.iter_mut()).zip(x) {
                        *m = if s.uniform() < rate { 0.0 } else { keep };
                        *y = x * *m;
                    }
                };
                let mask = &mut saved[..n];
                if n >= 2 * MASK_CHUNK && rayon::current_num_threads() > 1 {
                    mask.par_chunks_mut(MASK_CHUNK)
                        .zip(y.par_chunks_mut(MASK_CHUNK))
                        .zip(x.par_chunks(MASK_CHUNK))
                        .enumerate()
                        .for_each(body);
                } else {
                    mask.chunks_mut(MASK_CHUNK)
                        .zip(y.chunks_mut(MASK_CHUNK))
                        .zip(x.chunks(MASK_CHUNK))
                        .enumerate()
                        .for_each(body);
                }
            }
            NoiseKind::SpatialDropout { rate, channels } => {
                let keep = 1.0 / (1.0 - rate);
                let mask = &mut saved[..n];
                for (mr, (yr, xr)) in mask
                    .chunks_exact_mut(self.per_sample)
                    .zip(y.chunks_exact_mut(self.per_sample).zip(x.chunks_exact(self.per_sample)))
                {
                    // One draw per channel, written at every position of the map.
                    for ch in 0..channels {
                        mr[ch] = if rng.uniform() < rate { 0.0 } else { keep };
                    }
                    for pos in 1..self.per_sample / channels {
                        let (head, tail) = mr.split_at_mut(pos * channels);
                        tail[..channels].copy_from_slice(&head[..channels]);
                    }
                    for ((y, &x), &m) in yr.iter_mut().zip(xr).zip(mr.iter()) {
                        *y = x * m;
                    }
                }
            }
            NoiseKind::Gaussian { stddev } => {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x + stddev * rng.normal();
                }
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let n = p.rows * self.per_sample;
        match self.kind {
            NoiseKind::Gaussian { .. } => dx[..n].copy_from_slice(&p.grad_out[..n]),
            _ => {
                for ((d, &g), &m) in dx[..n].iter_mut().zip(&p.grad_out[..n]).zip(&p.saved[..n]) {
                    *d = g * m;
                }
            }
        }
    }
}
