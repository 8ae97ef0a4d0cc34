//! Loss functions: the per-sample value and its gradient with respect to the network output.
//!
//! A loss is the batch mean of a per-sample loss (Keras' `sum_over_batch_size`: with sample
//! weights `w_i`, `sum_i w_i l_i / n`). Per-sample forms, `k` outputs per sample
//! (note 000 "Funciones de pérdida", note 002 appendix B, note 004):
//! - MSE `mean_j (a_j - y_j)^2`; MAE `mean_j |a_j - y_j|`
//! - Huber `mean_j h(r_j)`, `h(r) = r^2 / 2` for `|r| <= delta`, else `delta (|r| - delta / 2)`
//! - binary cross entropy `mean_j -(y_j log p_j + (1 - y_j) log(1 - p_j))`, one sigmoid per
//!   output (binary and multi-label); from logits `max(z, 0) - z y + log(1 + e^-|z|)`
//! - categorical cross entropy `-sum_j y_j log p_j`; sparse: `-log p_c`
//! - KL divergence `sum_j y_j log(y_j / p_j)` (note 002 B.2.2), both clipped to `[1e-7, 1]`
//! - Hellinger distance `||sqrt(p) - sqrt(y)||_2 / sqrt(2)` (note 002 B.2.2). Its gradient is
//!   `(sqrt p_j - sqrt y_j) / (2 sqrt(2 p_j) ||sqrt p - sqrt y||)`; the note's expression lacks
//!   the factor 1/2 from `d sqrt(p)/dp`.
//!
//! Fusions (note 002): softmax + cross entropy and sigmoid + binary cross entropy give the delta
//! `a - y` at the pre-activation, exact and stable for confident predictions.
//!
//! Probabilities (`from_logits=false`) are clipped to `[1e-7, 1 - 1e-7]` before a log, and
//! categorical ones normalised to sum 1, as Keras does; logits go through a stable
//! log-sum-exp. Label smoothing follows note 004: with `k` classes, ones become `1 - eps` and
//! zeros `eps / (k - 1)` (binary: `1 - eps` and `eps`). Keras instead uses `y (1 - eps) + eps / k`
//! (binary `y (1 - eps) + eps / 2`).

use ndarray::ArrayViewD;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::activation::{sigmoid, Activation};
use crate::error::{invalid, Result};

/// Most blocks a batch's loss is summed in (see [`Loss::evaluate`]).
const LOSS_BLOCKS: usize = 64;

/// Outputs (rows x columns) from which a batch's loss runs in parallel: at about 10 ns per
/// output (a cross entropy's exponential and logarithm), 32k of them take a few hundred
/// microseconds, well above a parallel region's cost.
const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// Probability clipping bound of the cross entropies (Keras' `epsilon()`).
pub const PROB_EPSILON: f32 = 1e-7;

/// A loss function and its options.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Loss {
    MeanSquaredError,
    MeanAbsoluteError,
    Huber {
        #[serde(default = "one")]
        delta: f32,
    },
    BinaryCrossentropy {
        #[serde(default)]
        from_logits: bool,
        #[serde(default)]
        label_smoothing: f32,
    },
    CategoricalCrossentropy {
        #[serde(default)]
        from_logits: bool,
        #[serde(default)]
        label_smoothing: f32,
    },
    SparseCategoricalCrossentropy {
        #[serde(default)]
        from_logits: bool,
    },
    KlDivergence,
    Hellinger,
}

fn one() -> f32 {
    1.0
}

/// One sample's target row, dense or as a class index, with label smoothing applied on read.
#[derive(Clone, Copy)]
struct Target<'a> {
    row: &'a [f32],
    sparse: bool,
    /// `y -> y * scale + shift`.
    scale: f32,
    shift: f32,
}

impl Target<'_> {
    #[inline]
    fn at(&self, j: usize) -> f32 {
        let y = if self.sparse { (self.row[0] as usize == j) as u8 as f32 } else { self.row[j] };
        y * self.scale + self.shift
    }
}

impl Loss {
    /// The mean over samples of the loss between `y_true` and `y_pred` (one row per sample on
    /// the first axis), as Keras' `loss(y_true, y_pred)`.
    pub fn mean(&self, y_true: &ArrayViewD<'_, f32>, y_pred: &ArrayViewD<'_, f32>) -> Result<f64> {
        let rows = y_pred.shape().first().copied().unwrap_or(0);
        if rows == 0 || y_pred.is_empty() {
            return Err(invalid("y_pred is empty"));
        }
        let contiguous = |what: &str| invalid(format!("{what} must be a C-contiguous float32 array"));
        let pred = y_pred.as_slice().ok_or_else(|| contiguous("y_pred"))?;
        let truth = y_true.as_slice().ok_or_else(|| contiguous("y_true"))?;
        let cols = pred.len() / rows;
        let tw = self.target_width(cols);
        if truth.len() != rows * tw {
            return Err(invalid(format!(
                "y_true must hold {tw} value(s) per sample to match y_pred of {cols} per sample; got {} values for \
                 {rows} samples",
                truth.len()
            )));
        }
        self.validate_targets(truth, cols)?;
        Ok(self.evaluate(pred, truth, None, rows, cols, false, 1.0, None) / rows as f64)
    }

    /// Number of target values per sample for an output of `out_width` values.
    pub fn target_width(&self, out_width: usize) -> usize {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => 1,
            _ => out_width,
        }
    }

    /// Whether the loss takes over the backward pass of a final `act`.
    pub fn fuses_with(&self, act: Activation) -> bool {
        match self {
            Loss::CategoricalCrossentropy { from_logits: false, .. }
            | Loss::SparseCategoricalCrossentropy { from_logits: false } => {
                act == Activation::Softmax { temperature: 1.0 }
            }
            Loss::BinaryCrossentropy { from_logits: false, .. } => act == Activation::Sigmoid,
            _ => false,
        }
    }

    /// Checks the options once at compile time.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Loss::Huber { delta } if !(delta.is_finite() && delta > 0.0) => {
                Err(invalid(format!("Huber: delta must be positive; got {delta}")))
            }
            Loss::BinaryCrossentropy { label_smoothing: s, .. }
            | Loss::CategoricalCrossentropy { label_smoothing: s, .. }
                if !(0.0..=1.0).contains(&s) =>
            {
                Err(invalid(format!("label_smoothing must be in [0, 1]; got {s}")))
            }
            _ => Ok(()),
        }
    }

    /// Checks the targets once before training: finite values, integer labels in range.
    pub fn validate_targets(&self, y: &[f32], out_width: usize) -> Result<()> {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!("y contains NaN or Inf (at flat index {i})")));
        }
        if let Loss::SparseCategoricalCrossentropy { .. } = self {
            if let Some(&bad) = y.iter().find(|&&v| v < 0.0 || v >= out_width as f32 || v.fract() != 0.0) {
                return Err(invalid(format!(
                    "labels must be integers in [0, {out_width}) for an output of {out_width} units; found {bad}"
                )));
            }
        }
        Ok(())
    }

    /// The label-smoothing map `y -> y * scale + shift` for `k` outputs (note 004).
    fn smoothing(&self, k: usize) -> (f32, f32) {
        match *self {
            Loss::CategoricalCrossentropy { label_smoothing: eps, .. } if eps > 0.0 && k > 1 => {
                let off = eps / (k - 1) as f32;
                (1.0 - eps - off, off)
            }
            Loss::BinaryCrossentropy { label_smoothing: eps, .. } if eps > 0.0 => (1.0 - 2.0 * eps, eps),
            _ => (1.0, 0.0),
        }
    }

    /// Sum over the `rows` samples of the (weighted) per-sample loss. When `grad` is given it
    /// receives the gradient of `scale * sum` (use `scale = 1/batch` for the batch mean) with
    /// respect to the output or, when `fused`, to the last pre-activation.
    ///
    /// The rows are summed in at most [`LOSS_BLOCKS`] blocks, each in row order, then the block
    /// sums in block order: the same bits whether the blocks ran on one thread or several
    /// (they do in parallel from [`PARALLEL_MIN_VALUES`] outputs on: a wide head's exponentials
    /// can cost as much as its layer's product).
    pub fn evaluate(
        &self,
        out: &[f32],
        y: &[f32],
        weights: Option<&[f32]>,
        rows: usize,
        cols: usize,
        fused: bool,
        scale: f32,
        grad: Option<&mut [f32]>,
    ) -> f64 {
        let tw = self.target_width(cols);
        let sparse = tw == 1 && matches!(self, Loss::SparseCategoricalCrossentropy { .. });
        let (sm_scale, sm_shift) = self.smoothing(cols);
        let block_rows = rows.div_ceil(LOSS_BLOCKS).max(1);
        let blocks = rows.div_ceil(block_rows);
        // Rows `b * block_rows ..` into `sum`, their gradient (when asked) into `grad`.
        let block = |b: usize, sum: &mut f64, mut grad: Option<&mut [f32]>| {
            let first = b * block_rows;
            for i in first..(first + block_rows).min(rows) {
                let w = weights.map_or(1.0, |w| w[i]);
                let a = &out[i * cols..(i + 1) * cols];
                let t = Target { row: &y[i * tw..(i + 1) * tw], sparse, scale: sm_scale, shift: sm_shift };
                let k = i - first;
                let g = grad.as_deref_mut().map(|g| &mut g[k * cols..(k + 1) * cols]);
                *sum += w as f64 * self.row(a, t, fused, scale * w, g);
            }
        };
        let mut sums = [0.0f64; LOSS_BLOCKS];
        let sums = &mut sums[..blocks];
        let grad = grad.map(|g| &mut g[..rows * cols]);
        if rows * cols >= PARALLEL_MIN_VALUES && rayon::current_num_threads() > 1 {
            match grad {
                Some(g) => sums
                    .par_iter_mut()
                    .zip(g.par_chunks_mut(block_rows * cols))
                    .enumerate()
                    .for_each(|(b, (sum, g))| block(b, sum, Some(g))),
                None => sums.par_iter_mut().enumerate().for_each(|(b, sum)| block(b, sum, None)),
            }
        } else {
            match grad {
                Some(g) => {
                    sums.iter_mut().zip(g.chunks_mut(block_rows * cols)).enumerate().for_each(|(b, (sum, g))| {
                        block(b, sum, Some(g));
                    })
                }
                None => sums.iter_mut().enumerate().for_each(|(b, sum)| block(b, sum, None)),
            }
        }
        sums.iter().sum()
    }

    fn row(&self, a: &[f32], y: Target<'_>, fused: bool, scale: f32, grad: Option<&mut [f32]>) -> f64 {
        let k = a.len() as f32;
        match *self {
            Loss::MeanSquaredError => elementwise(a, y, scale / k, grad, |r| (r * r, 2.0 * r)),
            Loss::MeanAbsoluteError => elementwise(a, y, scale / k, grad, |r| (r.abs(), sign(r))),
            Loss::Huber { delta } => elementwise(a, y, scale / k, grad, |r| {
                let delta = delta as f64;
                if r.abs() <= delta {
                    (0.5 * r * r, r)
                } else {
                    (delta * (r.abs() - 0.5 * delta), delta * sign(r))
                }
            }),
            Loss::BinaryCrossentropy { from_logits, .. } => bce_row(a, y, from_logits, fused, scale / k, grad),
            Loss::CategoricalCrossentropy { from_logits, .. } | Loss::SparseCategoricalCrossentropy { from_logits } => {
                if from_logits {
                    ce_logits_row(a, y, scale, grad)
                } else if fused {
                    ce_fused_softmax_row(a, y, scale, grad)
                } else {
                    ce_probabilities_row(a, y, scale, grad)
                }
            }
            Loss::KlDivergence => kld_row(a, y, scale, grad),
            Loss::Hellinger => hellinger_row(a, y, scale, grad),
        }
    }
}

#[inline]
fn sign(r: f64) -> f64 {
    if r > 0.0 {
        1.0
    } else if r < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Losses of the residual `r = a - y`: `f(r) -> (value, d value / d r)`, mean over the row.
fn elementwise(a: &[f32], y: Target<'_>, gscale: f32, grad: Option<&mut [f32]>, f: impl Fn(f64) -> (f64, f64)) -> f64 {
    let mut sum = 0.0;
    match grad {
        Some(g) => {
            for j in 0..a.len() {
                let (v, d) = f(a[j] as f64 - y.at(j) as f64);
                sum += v;
                g[j] = gscale * d as f32;
            }
        }
        None => {
            for j in 0..a.len() {
                sum += f(a[j] as f64 - y.at(j) as f64).0;
            }
        }
    }
    sum / a.len() as f64
}

fn bce_row(a: &[f32], y: Target<'_>, from_logits: bool, fused: bool, gscale: f32, mut grad: Option<&mut [f32]>) -> f64 {
    let mut sum = 0.0f64;
    for j in 0..a.len() {
        let t = y.at(j);
        let (loss, d) = if from_logits {
            let z = a[j];
            ((z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()) as f64, sigmoid(z) - t)
        } else {
            let p = a[j].clamp(PROB_EPSILON, 1.0 - PROB_EPSILON);
            let loss = -(t as f64 * (p as f64).ln() + (1.0 - t as f64) * (1.0 - p as f64).ln());
            let d = if fused {
                a[j] - t
            } else if a[j] > PROB_EPSILON && a[j] < 1.0 - PROB_EPSILON {
                (p - t) / (p * (1.0 - p))
            } else {
                0.0
            };
            (loss, d)
        };
        sum += loss;
        if let Some(g) = grad.as_deref_mut() {
            g[j] = gscale * d;
        }
    }
    sum / a.len() as f64
}

/// Cross entropy on softmax probabilities whose gradient goes straight to the logits: `a - y`.
fn ce_fused_softmax_row(a: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let loss = clipped_log_loss(a, 1.0, y);
    if let Some(g) = grad {
        let ysum: f32 = (0..a.len()).map(|j| y.at(j)).sum();
        g.iter_mut().enumerate().for_each(|(j, g)| *g = scale * (ysum * a[j] - y.at(j)));
    }
    loss
}

/// `-sum_j y_j log clip(a_j / s)`.
fn clipped_log_loss(a: &[f32], s: f32, y: Target<'_>) -> f64 {
    let mut loss = 0.0f64;
    for j in 0..a.len() {
        let yj = y.at(j);
        if yj != 0.0 {
            let p = (a[j] / s).clamp(PROB_EPSILON, 1.0 - PROB_EPSILON);
            loss -= yj as f64 * (p as f64).ln();
        }
    }
    loss
}

/// Cross entropy on an arbitrary non-negative output, normalised to sum 1 as Keras does.
fn ce_probabilities_row(a: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let s: f32 = a.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    let loss = clipped_log_loss(a, s, y);
    if let Some(g) = grad {
        // dl/dp_j = -y_j / p_j inside the clip range (zero outside), then through p = a / s.
        let mut dot = 0.0f32;
        for j in 0..a.len() {
            let p = a[j] / s;
            let gp = if p > PROB_EPSILON && p < 1.0 - PROB_EPSILON { -y.at(j) / p } else { 0.0 };
            g[j] = gp;
            dot += gp * p;
        }
        g.iter_mut().for_each(|g| *g = scale * (*g - dot) / s);
    }
    loss
}

/// Cross entropy from logits through a stable log-softmax:
/// `lse = max + ln sum_j exp(z_j - max)`, loss `sum_j y_j (lse - z_j)`, gradient
/// `softmax(z) sum(y) - y`. Each `exp(z_j - max)` is taken once and serves both: it is the
/// costly part of a small head's step (a 128 x 10 batch spent more time here than in its last
/// Dense layer when the loss took its exponentials again in f64).
fn ce_logits_row(z: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let loss = |sum: f64| {
        let lse = max as f64 + sum.ln();
        (0..z.len()).map(|j| y.at(j) as f64 * (lse - z[j] as f64)).sum::<f64>()
    };
    let Some(g) = grad else {
        return loss(z.iter().map(|&v| (v - max).exp() as f64).sum());
    };
    let mut sum = 0.0f64;
    for (g, &v) in g.iter_mut().zip(z) {
        *g = (v - max).exp();
        sum += *g as f64;
    }
    let ysum: f32 = (0..z.len()).map(|j| y.at(j)).sum();
    let to_grad = (ysum as f64 / sum) as f32;
    g.iter_mut().enumerate().for_each(|(j, g)| *g = scale * (*g * to_grad - y.at(j)));
    loss(sum)
}

fn kld_row(a: &[f32], y: Target<'_>, scale: f32, mut grad: Option<&mut [f32]>) -> f64 {
    let mut loss = 0.0f64;
    for j in 0..a.len() {
        let t = y.at(j).clamp(PROB_EPSILON, 1.0);
        let p = a[j].clamp(PROB_EPSILON, 1.0);
        loss += t as f64 * (t as f64 / p as f64).ln();
        if let Some(g) = grad.as_deref_mut() {
            let inside = a[j] >= PROB_EPSILON && a[j] <= 1.0;
            g[j] = if inside { -scale * t / p } else { 0.0 };
        }
    }
    loss
}

fn hellinger_row(a: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let root = |j: usize| (a[j].max(PROB_EPSILON) as f64).sqrt() - (y.at(j).max(0.0) as f64).sqrt();
    let norm = (0..a.len()).map(|j| root(j).powi(2)).sum::<f64>().sqrt();
    if let Some(g) = grad {
        for j in 0..a.len() {
            let inside = a[j] > PROB_EPSILON;
            g[j] = if norm > 0.0 && inside {
                (scale as f64 * root(j) / (2.0 * (2.0 * a[j] as f64).sqrt() * norm)) as f32
            } else {
                0.0
            };
        }
    }
    norm / std::f64::consts::SQRT_2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central-difference gradient of `evaluate` with respect to the output (or pre-activation).
    fn check(loss: Loss, z: &[f32], y: &[f32], last: Activation) {
        let cols = z.len();
        let fused = loss.fuses_with(last);
        let value = |z: &[f32]| -> f64 {
            let mut a = z.to_vec();
            if fused {
                last.forward_row(&mut a);
            }
            loss.evaluate(&a, y, None, 1, cols, fused, 1.0, None)
        };
        let mut a = z.to_vec();
        if fused {
            last.forward_row(&mut a);
        }
        let mut g = vec![0.0; cols];
        loss.evaluate(&a, y, None, 1, cols, fused, 1.0, Some(&mut g));
        for i in 0..cols {
            let h = 1e-3 * (1.0 + z[i].abs());
            let (mut p, mut m) = (z.to_vec(), z.to_vec());
            p[i] += h;
            m[i] -= h;
            let num = (value(&p) - value(&m)) / ((p[i] - m[i]) as f64);
            assert!(
                (num - g[i] as f64).abs() < 3e-3 * (1.0 + num.abs()),
                "{loss:?} at {z:?} d[{i}]: {num} vs {}",
                g[i]
            );
        }
    }

    const SOFTMAX: Activation = Activation::Softmax { temperature: 1.0 };

    #[test]
    fn a_wide_batch_gives_the_same_loss_and_gradient_on_one_thread_and_several() {
        let (rows, cols) = (301, 173); // 52k outputs: parallel blocks, the last one short
        let z: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 100.0).collect();
        let labels: Vec<f32> = (0..rows).map(|i| (i * 31 % cols) as f32).collect();
        let weights: Vec<f32> = (0..rows).map(|i| 0.5 + (i % 3) as f32).collect();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
        let run = |threads: usize, with_grad: bool| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut g = vec![f32::NAN; (rows + 5) * cols]; // longer than the batch, as a workspace is
            let sum = pool.install(|| {
                let grad = with_grad.then_some(&mut g[..]);
                loss.evaluate(&z, &labels, Some(&weights), rows, cols, false, 0.25, grad)
            });
            (sum, g)
        };
        let (one, g_one) = run(1, true);
        for threads in [2, 3] {
            let (many, g_many) = run(threads, true);
            assert_eq!(one.to_bits(), many.to_bits(), "{threads} threads");
            assert!(g_one.iter().zip(&g_many).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads");
            assert_eq!(run(threads, false).0.to_bits(), one.to_bits());
        }
        assert!(g_one[..rows * cols].iter().all(|g| g.is_finite()) && g_one[rows * cols..].iter().all(|g| g.is_nan()));
        // The value itself, against the row-by-row definition in f64.
        let want: f64 = (0..rows)
            .map(|i| {
                let row = &z[i * cols..(i + 1) * cols];
                let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                weights[i] as f64 * (lse - row[labels[i] as usize] as f64)
            })
            .sum();
        assert!((one - want).abs() < 1e-6 * want.abs(), "{one} vs {want}");
    }

    #[test]
    fn gradients_match_central_differences() {
        let z = [0.3, -0.8, 1.4];
        let big = [40.0, -35.0, 3.0];
        let probs = [0.2, 0.5, 0.3];
        let onehot = [0.0, 0.0, 1.0];
        let multi = [1.0, 0.0, 1.0];
        let reg = [0.1, 0.2, -0.3];
        for (loss, x, y, last) in [
            (Loss::MeanSquaredError, &z, &reg[..], Activation::Linear),
            (Loss::MeanAbsoluteError, &z, &reg[..], Activation::Linear),
            (Loss::Huber { delta: 1.0 }, &z, &reg[..], Activation::Linear),
            (Loss::Huber { delta: 0.5 }, &big, &reg[..], Activation::Linear),
            (
                Loss::CategoricalCrossentropy { from_logits: true, label_smoothing: 0.0 },
                &z,
                &onehot[..],
                Activation::Linear,
            ),
            (
                Loss::CategoricalCrossentropy { from_logits: true, label_smoothing: 0.0 },
                &big,
                &onehot[..],
                Activation::Linear,
            ),
            (
                Loss::CategoricalCrossentropy { from_logits: true, label_smoothing: 0.1 },
                &z,
                &onehot[..],
                Activation::Linear,
            ),
            (
                Loss::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.0 },
                &probs,
                &onehot[..],
                Activation::Linear,
            ),
            (Loss::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.0 }, &z, &onehot[..], SOFTMAX),
            (Loss::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.2 }, &z, &onehot[..], SOFTMAX),
            (Loss::SparseCategoricalCrossentropy { from_logits: true }, &z, &[1.0][..], Activation::Linear),
            (Loss::SparseCategoricalCrossentropy { from_logits: false }, &z, &[0.0][..], SOFTMAX),
            (Loss::SparseCategoricalCrossentropy { from_logits: false }, &probs, &[1.0][..], Activation::Linear),
            (Loss::BinaryCrossentropy { from_logits: true, label_smoothing: 0.0 }, &z, &multi[..], Activation::Linear),
            (
                Loss::BinaryCrossentropy { from_logits: true, label_smoothing: 0.0 },
                &big,
                &multi[..],
                Activation::Linear,
            ),
            (Loss::BinaryCrossentropy { from_logits: true, label_smoothing: 0.1 }, &z, &multi[..], Activation::Linear),
            (
                Loss::BinaryCrossentropy { from_logits: false, label_smoothing: 0.0 },
                &probs,
                &multi[..],
                Activation::Linear,
            ),
            (
                Loss::BinaryCrossentropy { from_logits: false, label_smoothing: 0.0 },
                &z,
                &multi[..],
                Activation::Sigmoid,
            ),
            (Loss::KlDivergence, &probs, &[0.1, 0.6, 0.3][..], Activation::Linear),
            (Loss::Hellinger, &probs, &[0.1, 0.6, 0.3][..], Activation::Linear),
        ] {
            check(loss, x, y, last);
        }
    }

    #[test]
    fn huber_is_smooth_at_plus_minus_delta() {
        // At r = +-delta both branches give value delta^2 / 2 and slope +-delta.
        let l = Loss::Huber { delta: 1.0 };
        for r in [1.0f32, -1.0] {
            let mut g = [0.0];
            let v = l.evaluate(&[r], &[0.0], None, 1, 1, false, 1.0, Some(&mut g));
            assert!((v - 0.5).abs() < 1e-9 && (g[0] - r).abs() < 1e-7);
        }
    }

    #[test]
    fn values_match_closed_forms() {
        let mse = Loss::MeanSquaredError.evaluate(&[1.0, 2.0], &[0.0, 0.0], None, 1, 2, false, 1.0, None);
        assert!((mse - 2.5).abs() < 1e-9);
        let ce = Loss::SparseCategoricalCrossentropy { from_logits: true };
        let v = ce.evaluate(&[0.0, 0.0], &[1.0], None, 1, 2, false, 1.0, None);
        assert!((v - std::f64::consts::LN_2).abs() < 1e-6);
        let cce = Loss::CategoricalCrossentropy { from_logits: true, label_smoothing: 0.0 };
        let v = cce.evaluate(&[1e4, -1e4], &[0.0, 1.0], None, 1, 2, false, 1.0, None);
        assert!((v - 2e4).abs() < 1.0);
        let bce = Loss::BinaryCrossentropy { from_logits: true, label_smoothing: 0.0 };
        let v = bce.evaluate(&[1e4, -1e4], &[0.0, 1.0], None, 1, 2, false, 1.0, None);
        assert!((v - 1e4).abs() < 1.0);
        // Weighted: sum_i w_i l_i.
        let w = Loss::MeanSquaredError.evaluate(&[1.0, 2.0], &[0.0, 0.0], Some(&[2.0, 0.5]), 2, 1, false, 1.0, None);
        assert!((w - (2.0 + 2.0)).abs() < 1e-9);
    }

    #[test]
    fn label_smoothing_follows_note_004() {
        // k = 5, eps = 0.01: [0.0025, 0.0025, 0.99, 0.0025, 0.0025].
        let l = Loss::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.01 };
        let (s, o) = l.smoothing(5);
        let t = Target { row: &[0.0, 0.0, 1.0, 0.0, 0.0], sparse: false, scale: s, shift: o };
        let got: Vec<f32> = (0..5).map(|j| t.at(j)).collect();
        for (g, w) in got.iter().zip([0.0025, 0.0025, 0.99, 0.0025, 0.0025]) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
        let (s, o) = Loss::BinaryCrossentropy { from_logits: false, label_smoothing: 0.1 }.smoothing(1);
        assert!((s + o - 0.9).abs() < 1e-7 && (o - 0.1).abs() < 1e-7);
    }

    #[test]
    fn label_validation_names_the_range() {
        let l = Loss::SparseCategoricalCrossentropy { from_logits: false };
        assert!(l.validate_targets(&[0.0, 2.0], 3).is_ok());
        let e = l.validate_targets(&[0.0, 3.0], 3).unwrap_err().to_string();
        assert!(e.contains("[0, 3)"), "{e}");
        assert!(l.validate_targets(&[0.5], 3).is_err());
        assert!(Loss::MeanSquaredError.validate_targets(&[f32::NAN], 1).is_err());
        assert!(Loss::Huber { delta: 0.0 }.validate().is_err());
    }
}
