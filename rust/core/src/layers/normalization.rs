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

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::params::{ParamStore, Role};

use super::batch_norm;
use super::spec::{check_last_axis, defaults, BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// The arguments every normalization layer has: the channel axis (the last), `epsilon`, and
/// whether to learn a shift (`center`: beta) and a scale (`scale`: gamma).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormArgs {
    #[serde(default = "defaults::last_axis")]
    pub axis: i64,
    #[serde(default = "defaults::epsilon")]
    pub epsilon: f32,
    #[serde(default = "defaults::yes")]
    pub center: bool,
    #[serde(default = "defaults::yes")]
    pub scale: bool,
}

impl Default for NormArgs {
    fn default() -> Self {
        Self { axis: -1, epsilon: defaults::epsilon(), center: true, scale: true }
    }
}

impl NormArgs {
    fn validate(&self, layer: &str, name: &str) -> Result<()> {
        check_last_axis(layer, name, self.axis)?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(invalid(format!("{layer} '{name}': epsilon must be positive; got {}", self.epsilon)));
        }
        Ok(())
    }

    /// Builds a normalization of `kind` over the one input.
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>], kind: NormKind) -> Result<(Op, Vec<usize>)> {
        let shape = ctx.one_input(inputs)?.to_vec();
        let l = Normalization::build(ctx.name, kind, &shape, self.epsilon, self.center, self.scale, ctx.params)?;
        Ok((Op::unary(l), shape))
    }
}

/// `keras.layers.BatchNormalization` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormalizationConfig {
    #[serde(default = "bn_momentum")]
    pub momentum: f32,
    #[serde(flatten)]
    pub norm: NormArgs,
}

impl Default for BatchNormalizationConfig {
    fn default() -> Self {
        Self { momentum: bn_momentum(), norm: NormArgs::default() }
    }
}

fn bn_momentum() -> f32 {
    0.99
}

/// `keras.layers.LayerNormalization` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct LayerNormalizationConfig {
    #[serde(flatten)]
    pub norm: NormArgs,
}

/// `keras.layers.GroupNormalization` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupNormalizationConfig {
    #[serde(default = "thirty_two")]
    pub groups: usize,
    #[serde(flatten)]
    pub norm: NormArgs,
}

fn thirty_two() -> usize {
    32
}

impl BuildLayer for BatchNormalizationConfig {
    fn validate(&self, name: &str) -> Result<()> {
        self.norm.validate("BatchNormalization", name)?;
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(invalid(format!(
                "BatchNormalization '{name}': momentum must be in [0, 1]; got {}",
                self.momentum
            )));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        self.norm.build(ctx, inputs, NormKind::Batch { momentum: self.momentum })
    }
}

impl BuildLayer for LayerNormalizationConfig {
    fn validate(&self, name: &str) -> Result<()> {
        self.norm.validate("LayerNormalization", name)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        self.norm.build(ctx, inputs, NormKind::Layer)
    }
}

impl BuildLayer for GroupNormalizationConfig {
    fn validate(&self, name: &str) -> Result<()> {
        self.norm.validate("GroupNormalization", name)?;
        if self.groups == 0 {
            return Err(invalid(format!("GroupNormalization '{name}': groups must be a positive integer")));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        self.norm.build(ctx, inputs, NormKind::Group { groups: self.groups })
    }
}

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
            if let Some(v) = params.values.get_mut(r) {
                v.fill(value);
            }
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

    /// Writes gamma (or 1) and beta (or 0) per channel.
    fn gamma_beta(&self, params: &[f32], scale: &mut [f32], shift: &mut [f32]) {
        let c = self.channels;
        match self.gamma {
            Some(o) => scale.copy_from_slice(&params[o..o + c]),
            None => scale.fill(1.0),
        }
        match self.beta {
            Some(o) => shift.copy_from_slice(&params[o..o + c]),
            None => shift.fill(0.0),
        }
    }

    fn affine(&self, params: &[f32], x_hat: f32, ch: usize) -> f32 {
        let g = self.gamma.map_or(1.0, |o| params[o + ch]);
        let b = self.beta.map_or(0.0, |o| params[o + ch]);
        g * x_hat + b
    }
}

impl LayerKernel for Normalization {
    /// Batch normalization: what freezing turns off (a frozen one runs in inference mode).
    fn uses_batch_statistics(&self) -> bool {
        matches!(self.kind, NormKind::Batch { .. })
    }

    /// Kept for backward: `x_hat` for every value, then `1/sigma` per group.
    fn saved_width(&self) -> usize {
        self.per_sample
            + match self.kind {
                NormKind::Batch { .. } => 0,
                NormKind::Layer => self.per_sample / self.channels,
                NormKind::Group { groups } => groups,
            }
    }

    /// Scratch beyond the per-sample part: batch normalization's `1/sigma`, mean and variance per
    /// channel and the partial sums of its chunks (so no step allocates).
    fn saved_extra(&self) -> usize {
        match self.kind {
            NormKind::Batch { .. } => (3 + 2 * batch_norm::STAT_CHUNKS) * self.channels,
            NormKind::Layer | NormKind::Group { .. } => 0,
        }
    }

    /// Inference: batch normalization's per-channel affine map (scale, shift).
    fn inference_extra(&self) -> usize {
        match self.kind {
            NormKind::Batch { .. } => 2 * self.channels,
            NormKind::Layer | NormKind::Group { .. } => 0,
        }
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { params, input, output, saved, rows, training, keep, .. } = p;
        let (c, n) = (self.channels, rows * self.per_sample);
        let (x, y) = (&input[..n], &mut output[..n]);
        // Training keeps x̂ for backward, then the statistics; inference keeps nothing.
        let (x_hat, inv) = saved.split_at_mut(if keep { n } else { 0 });
        match self.kind {
            NormKind::Batch { .. } if !training => {
                // One affine map per channel from the moving statistics:
                // y = gamma (x - mu) / sqrt(var + eps) + beta = s x + (beta - s mu).
                let (mo, vo) = self.moving.expect("batch norm has moving statistics");
                let map = if keep { &mut inv[3 * c..5 * c] } else { &mut inv[..2 * c] };
                let (scale, shift) = map.split_at_mut(c);
                self.gamma_beta(params, scale, shift);
                for ch in 0..c {
                    let s = scale[ch] / (params[vo + ch] + self.epsilon).sqrt();
                    scale[ch] = s;
                    shift[ch] -= s * params[mo + ch];
                }
                batch_norm::affine(x, y, scale, shift);
            }
            NormKind::Batch { momentum } => {
                let (mo, vo) = self.moving.expect("batch norm has moving statistics");
                let (inv, rest) = inv.split_at_mut(c);
                let (mean, rest) = rest.split_at_mut(c);
                let (var, partials) = rest.split_at_mut(c);
                // After the statistics, the partial-sum slots hold the per-channel affine map.
                batch_norm::statistics(x, c, partials, mean, var);
                for ch in 0..c {
                    inv[ch] = 1.0 / (var[ch] + self.epsilon).sqrt();
                    params[mo + ch] = momentum * params[mo + ch] + (1.0 - momentum) * mean[ch];
                    params[vo + ch] = momentum * params[vo + ch] + (1.0 - momentum) * var[ch];
                }
                let (scale, shift) = partials[..2 * c].split_at_mut(c);
                self.gamma_beta(params, scale, shift);
                batch_norm::normalize(x, x_hat, y, mean, inv, scale, shift);
            }
            NormKind::Group { groups } => {
                let (ps, cg) = (self.per_sample, c / groups);
                let count = (ps / c * cg) as f64;
                for (r, (xs, ys)) in x.chunks_exact(ps).zip(y.chunks_exact_mut(ps)).enumerate() {
                    for gi in 0..groups {
                        let members = || xs.chunks_exact(c).flat_map(move |cell| cell[gi * cg..(gi + 1) * cg].iter());
                        let mean = members().map(|&v| v as f64).sum::<f64>() / count;
                        let var = members().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
                        let s = (1.0 / (var + self.epsilon as f64).sqrt()) as f32;
                        if keep {
                            inv[r * groups + gi] = s;
                        }
                        for (cell, (xc, yc)) in xs.chunks_exact(c).zip(ys.chunks_exact_mut(c)).enumerate() {
                            for ch in gi * cg..(gi + 1) * cg {
                                let h = (xc[ch] - mean as f32) * s;
                                if keep {
                                    x_hat[r * ps + cell * c + ch] = h;
                                }
                                yc[ch] = self.affine(params, h, ch);
                            }
                        }
                    }
                }
            }
            NormKind::Layer => {
                for (g, (xr, yr)) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)).enumerate() {
                    let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                    let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
                    let s = (1.0 / (var + self.epsilon as f64).sqrt()) as f32;
                    if keep {
                        inv[g] = s;
                    }
                    for ch in 0..c {
                        let h = (xr[ch] - mean as f32) * s;
                        if keep {
                            x_hat[g * c + ch] = h;
                        }
                        yr[ch] = self.affine(params, h, ch);
                    }
                }
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let (c, n) = (self.channels, p.rows * self.per_sample);
        let g = &p.grad_out[..n];
        let (x_hat, rest) = p.saved.split_at_mut(n);
        let gamma = |ch: usize| self.gamma.map_or(1.0, |o| p.params[o + ch]);
        if let NormKind::Batch { .. } = self.kind {
            if !p.training {
                return self.frozen_batch_backward(p.grads, g, rest, p.grad_in.map(|d| &mut d[..n]));
            }
            return self.batch_backward(p.params, p.grads, g, x_hat, rest, p.grad_in.map(|d| &mut d[..n]));
        }
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
            NormKind::Batch { .. } => unreachable!("handled by batch_backward"),
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

impl Normalization {
    /// Backward of batch normalization run in inference mode (a frozen layer inside `fit`, as
    /// Keras 3 runs it): `y = s x + t` per channel with `s = gamma / sqrt(moving_var + eps)`,
    /// which forward left in the scratch, so `dx = s g`. gamma and beta are frozen: their
    /// gradients are written as zero.
    fn frozen_batch_backward(&self, grads: &mut [f32], g: &[f32], scratch: &mut [f32], dx: Option<&mut [f32]>) {
        let c = self.channels;
        for o in [self.gamma, self.beta].into_iter().flatten() {
            grads[o..o + c].fill(0.0);
        }
        let Some(dx) = dx else { return };
        // Layout of the scratch after forward: 1/sigma, mean and variance (c each), then the
        // partial sums whose first 2c values hold the affine map (scale, shift).
        let scale = &scratch[3 * c..4 * c];
        for (d, gr) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)) {
            d.iter_mut().zip(gr).zip(scale).for_each(|((d, &g), &s)| *d = g * s);
        }
    }

    /// Batch normalization's backward: one pass for `sum g` and `sum g x_hat` (which are also
    /// `dbeta` and `dgamma`), one for `dx`.
    fn batch_backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        g: &[f32],
        x_hat: &[f32],
        scratch: &mut [f32],
        dx: Option<&mut [f32]>,
    ) {
        let c = self.channels;
        let (inv, rest) = scratch.split_at_mut(c);
        let (sum_g, rest) = rest.split_at_mut(c);
        let (sum_gh, partials) = rest.split_at_mut(c);
        batch_norm::gradient_sums(g, x_hat, c, partials, sum_g, sum_gh);
        if let Some(o) = self.gamma {
            grads[o..o + c].copy_from_slice(sum_gh);
        }
        if let Some(o) = self.beta {
            grads[o..o + c].copy_from_slice(sum_g);
        }
        let Some(dx) = dx else { return };
        let count = (g.len() / c) as f32;
        let coef = &mut partials[..c];
        for ch in 0..c {
            coef[ch] = self.gamma.map_or(1.0, |o| params[o + ch]) * inv[ch];
            sum_g[ch] /= count;
            sum_gh[ch] /= count;
        }
        batch_norm::input_gradient(g, x_hat, dx, coef, sum_g, sum_gh);
    }
}
