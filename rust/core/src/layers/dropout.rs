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

use crate::rng::Stream;

use super::BackwardPass;

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

impl Noise {
    pub fn saved_width(&self) -> usize {
        match self.kind {
            NoiseKind::Gaussian { .. } => 0,
            _ => self.per_sample,
        }
    }

    pub fn forward(
        &self,
        input: &[f32],
        output: &mut [f32],
        saved: &mut [f32],
        rows: usize,
        training: bool,
        rng: &mut Stream,
    ) {
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

    pub fn backward(&self, p: BackwardPass<'_>) {
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
