//! Normalization layers (note 000 "BatchNorm", note 004 "BatchNorm y LayerNorm"), normalising
//! over groups of values that share a channel (the last axis, as Keras' `axis=-1`):
//!
//! `x_hat = (x - mu) / sqrt(var + eps)`, `y = gamma x_hat + beta`, with biased variance.
//!
//! - BatchNormalization: `mu`, `var` per channel over the batch (and every spatial position) in
//!   training; the moving averages `m <- momentum m + (1 - momentum) stat` (an exponential moving
//!   average, note 004) in inference. Weights in Keras order: gamma, beta, moving_mean,
//!   moving_variance (the last two not trained).
//! - LayerNormalization: `mu`, `var` per sample over the last axis, the same in training and
//!   inference; gamma and beta per feature.
//! - GroupNormalization: `mu`, `var` per sample and group of channels (over every position),
//!   the same in training and inference; gamma and beta per channel.
//!
//! Backward through the statistics, with `N` values per group:
//! `dx = (1/sigma) (dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat))`, `dx_hat = g gamma`,
//! `dgamma = sum g x_hat`, `dbeta = sum g`.

use crate::error::{invalid, Result};
use crate::params::{ParamStore, Role};

use super::BackwardPass;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormKind {
    Batch {
        momentum: f32,
    },
    Layer,
    /// Per sample, over groups of `channels / groups` consecutive channels and every position
    /// (Wu and He 2018; the small-batch alternative of note 000). gamma and beta per channel.
    Group {
        groups: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Normalization {
    pub kind: NormKind,
    pub epsilon: f32,
    /// Length of the normalised (last) axis.
    pub channels: usize,
    pub per_sample: usize,
    gamma: Option<usize>,
    beta: Option<usize>,
    /// Offsets of moving mean and variance (batch normalization only).
    moving: Option<(usize, usize)>,
}

impl Normalization {
    pub fn build(
        name: &str,
        kind: NormKind,
        input_shape: &[usize],
        epsilon: f32,
        center: bool,
        scale: bool,
        params: &mut ParamStore,
    ) -> Result<Self> {
        let Some(&channels) = input_shape.last() else {
            return Err(invalid(format!("normalization layer '{name}' needs a non-empty input shape")));
        };
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(invalid(format!("normalization layer '{name}': epsilon must be positive")));
        }
        if let NormKind::Batch { momentum } = kind {
            if !(0.0..=1.0).contains(&momentum) {
                return Err(invalid(format!("BatchNormalization '{name}': momentum must be in [0, 1]")));
            }
        }
        if let NormKind::Group { groups } = kind {
            if groups == 0 || channels % groups != 0 {
                return Err(invalid(format!(
                    "GroupNormalization '{name}': groups ({groups}) must divide the number of channels ({channels})"
                )));
            }
        }
        let mut reg = |what: &str, role: Role, value: f32| {
            let i = params.register(format!("{name}/{what}"), vec![channels], role);
            let r = params.tensors[i].range();
            params.values[r].fill(value);
            params.tensors[i].offset
        };
        let gamma = scale.then(|| reg("gamma", Role::Norm, 1.0));
        let beta = center.then(|| reg("beta", Role::Norm, 0.0));
        let moving = match kind {
            NormKind::Batch { .. } => {
                Some((reg("moving_mean", Role::NonTrainable, 0.0), reg("moving_variance", Role::NonTrainable, 1.0)))
            }
            NormKind::Layer | NormKind::Group { .. } => None,
        };
        Ok(Self { kind, epsilon, channels, per_sample: input_shape.iter().product(), gamma, beta, moving })
    }

    /// Kept for backward: `x_hat` for every value, then `1/sigma` per group.
    pub fn saved_width(&self) -> usize {
        self.per_sample
            + match self.kind {
                NormKind::Batch { .. } => 0,
                NormKind::Layer => self.per_sample / self.channels,
                NormKind::Group { groups } => groups,
            }
    }

    /// Scratch beyond the per-sample part: batch normalization's `1/sigma` per channel and two
    /// per-channel accumulators (so no step allocates).
    pub fn saved_extra(&self) -> usize {
        match self.kind {
            NormKind::Batch { .. } => 3 * self.channels,
            NormKind::Layer | NormKind::Group { .. } => 0,
        }
    }

    fn affine(&self, params: &[f32], x_hat: f32, ch: usize) -> f32 {
        let g = self.gamma.map_or(1.0, |o| params[o + ch]);
        let b = self.beta.map_or(0.0, |o| params[o + ch]);
        g * x_hat + b
    }

    pub fn forward(
        &self,
        params: &mut [f32],
        input: &[f32],
        output: &mut [f32],
        saved: &mut [f32],
        rows: usize,
        training: bool,
    ) {
        let (c, n) = (self.channels, rows * self.per_sample);
        let (x, y) = (&input[..n], &mut output[..n]);
        let (x_hat, inv) = saved.split_at_mut(n);
        match self.kind {
            NormKind::Batch { momentum } => {
                let (mo, vo) = self.moving.expect("batch norm has moving statistics");
                let groups = (n / c) as f32;
                let (inv, acc) = inv.split_at_mut(c);
                let (mean, var) = acc.split_at_mut(c);
                if training {
                    channel_sums(x, c, mean, |v, _| v);
                    mean.iter_mut().for_each(|m| *m /= groups);
                    channel_sums(x, c, var, |v, ch| (v - mean[ch]) * (v - mean[ch]));
                    var.iter_mut().for_each(|s| *s /= groups);
                    for ch in 0..c {
                        inv[ch] = 1.0 / (var[ch] + self.epsilon).sqrt();
                        params[mo + ch] = momentum * params[mo + ch] + (1.0 - momentum) * mean[ch];
                        params[vo + ch] = momentum * params[vo + ch] + (1.0 - momentum) * var[ch];
                    }
                    for ((xr, hr), yr) in x.chunks_exact(c).zip(x_hat.chunks_exact_mut(c)).zip(y.chunks_exact_mut(c)) {
                        for ch in 0..c {
                            hr[ch] = (xr[ch] - mean[ch]) * inv[ch];
                            yr[ch] = self.affine(params, hr[ch], ch);
                        }
                    }
                } else {
                    for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                        for ch in 0..c {
                            let s = 1.0 / (params[vo + ch] + self.epsilon).sqrt();
                            yr[ch] = self.affine(params, (xr[ch] - params[mo + ch]) * s, ch);
                        }
                    }
                }
            }
            NormKind::Group { groups } => {
                let (ps, cg) = (self.per_sample, c / groups);
                let count = (ps / c * cg) as f64;
                for (r, ((xs, hs), ys)) in
                    x.chunks_exact(ps).zip(x_hat.chunks_exact_mut(ps)).zip(y.chunks_exact_mut(ps)).enumerate()
                {
                    for gi in 0..groups {
                        let members = || xs.chunks_exact(c).flat_map(move |cell| cell[gi * cg..(gi + 1) * cg].iter());
                        let mean = members().map(|&v| v as f64).sum::<f64>() / count;
                        let var = members().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
                        let s = (1.0 / (var + self.epsilon as f64).sqrt()) as f32;
                        inv[r * groups + gi] = s;
                        for ((xc, hc), yc) in xs.chunks_exact(c).zip(hs.chunks_exact_mut(c)).zip(ys.chunks_exact_mut(c))
                        {
                            for ch in gi * cg..(gi + 1) * cg {
                                hc[ch] = (xc[ch] - mean as f32) * s;
                                yc[ch] = self.affine(params, hc[ch], ch);
                            }
                        }
                    }
                }
            }
            NormKind::Layer => {
                for (g, ((xr, hr), yr)) in
                    x.chunks_exact(c).zip(x_hat.chunks_exact_mut(c)).zip(y.chunks_exact_mut(c)).enumerate()
                {
                    let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                    let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
                    let s = (1.0 / (var + self.epsilon as f64).sqrt()) as f32;
                    inv[g] = s;
                    for ch in 0..c {
                        hr[ch] = (xr[ch] - mean as f32) * s;
                        yr[ch] = self.affine(params, hr[ch], ch);
                    }
                }
            }
        }
    }

    pub fn backward(&self, p: BackwardPass<'_>) {
        let (c, n) = (self.channels, p.rows * self.per_sample);
        let g = &p.grad_out[..n];
        let (x_hat, rest) = p.saved.split_at_mut(n);
        let gamma = |ch: usize| self.gamma.map_or(1.0, |o| p.params[o + ch]);
        // Parameter gradients: sums over every group.
        if let Some(o) = self.gamma {
            let dg = &mut p.grads[o..o + c];
            dg.fill(0.0);
            g.chunks_exact(c)
                .zip(x_hat.chunks_exact(c))
                .for_each(|(gr, hr)| (0..c).for_each(|ch| dg[ch] += gr[ch] * hr[ch]));
        }
        if let Some(o) = self.beta {
            let db = &mut p.grads[o..o + c];
            db.fill(0.0);
            g.chunks_exact(c).for_each(|gr| db.iter_mut().zip(gr).for_each(|(d, v)| *d += v));
        }
        let Some(dx) = p.grad_in else { return };
        let dx = &mut dx[..n];
        match self.kind {
            NormKind::Batch { .. } => {
                let groups = (n / c) as f32;
                let (inv, acc) = rest.split_at_mut(c);
                let (sum, dot) = acc.split_at_mut(c);
                sum.fill(0.0);
                dot.fill(0.0);
                for (gr, hr) in g.chunks_exact(c).zip(x_hat.chunks_exact(c)) {
                    for ch in 0..c {
                        let d = gr[ch] * gamma(ch);
                        sum[ch] += d;
                        dot[ch] += d * hr[ch];
                    }
                }
                for ((dr, gr), hr) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(x_hat.chunks_exact(c)) {
                    for ch in 0..c {
                        let d = gr[ch] * gamma(ch);
                        dr[ch] = inv[ch] * (d - sum[ch] / groups - hr[ch] * dot[ch] / groups);
                    }
                }
            }
            NormKind::Group { groups } => {
                let (ps, cg) = (self.per_sample, c / groups);
                let count = (ps / c * cg) as f32;
                let inv = &*rest;
                for (r, ((ds, gs), hs)) in
                    dx.chunks_exact_mut(ps).zip(g.chunks_exact(ps)).zip(x_hat.chunks_exact(ps)).enumerate()
                {
                    for gi in 0..groups {
                        let (mut sum, mut dot) = (0.0f32, 0.0f32);
                        for (gc, hc) in gs.chunks_exact(c).zip(hs.chunks_exact(c)) {
                            for ch in gi * cg..(gi + 1) * cg {
                                let d = gc[ch] * gamma(ch);
                                sum += d;
                                dot += d * hc[ch];
                            }
                        }
                        let s = inv[r * groups + gi];
                        for ((dc, gc), hc) in ds.chunks_exact_mut(c).zip(gs.chunks_exact(c)).zip(hs.chunks_exact(c)) {
                            for ch in gi * cg..(gi + 1) * cg {
                                let d = gc[ch] * gamma(ch);
                                dc[ch] = s * (d - sum / count - hc[ch] * dot / count);
                            }
                        }
                    }
                }
            }
            NormKind::Layer => {
                let inv = &*rest;
                for (k, ((dr, gr), hr)) in
                    dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(x_hat.chunks_exact(c)).enumerate()
                {
                    let (mut sum, mut dot) = (0.0f32, 0.0f32);
                    for ch in 0..c {
                        let d = gr[ch] * gamma(ch);
                        sum += d;
                        dot += d * hr[ch];
                    }
                    for ch in 0..c {
                        let d = gr[ch] * gamma(ch);
                        dr[ch] = inv[k] * (d - sum / c as f32 - hr[ch] * dot / c as f32);
                    }
                }
            }
        }
    }
}

/// `out[ch] = sum over the rows of x (rows of c values) of f(x[ch], ch)`, summed in blocks of
/// rows so float32 rounding stays small on large batches.
fn channel_sums(x: &[f32], c: usize, out: &mut [f32], f: impl Fn(f32, usize) -> f32) {
    const BLOCK: usize = 64;
    out.fill(0.0);
    for block in x.chunks(BLOCK * c) {
        for ch in 0..c {
            let partial: f32 = block.chunks_exact(c).map(|r| f(r[ch], ch)).sum();
            out[ch] += partial;
        }
    }
}
