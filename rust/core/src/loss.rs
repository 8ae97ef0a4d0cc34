//! Loss functions: the per-sample value and its gradient with respect to the network output.
//!
//! Every loss is the mean over the batch of a per-sample loss (Keras' default reduction).
//! Formulas (note 000 "Funciones de pérdida", note 002 appendix B):
//! - MSE: `l = (1/k) sum_j (a_j - y_j)^2`, `dl/da_j = 2 (a_j - y_j) / k`
//! - categorical cross entropy: `l = -sum_j y_j log p_j`
//! - softmax + cross entropy fused (note 002): `dl/dz = a - y`, so the softmax Jacobian is skipped
//!   and the delta stays exact for confident predictions.
//!
//! With `from_logits=false` probabilities are normalised to sum to 1 and clipped to
//! `[1e-7, 1 - 1e-7]` before the log, as Keras does; with `from_logits=true` the log-softmax is
//! computed directly from the logits (log-sum-exp shifted by the row maximum).

use serde::{Deserialize, Serialize};

use crate::activation::{softmax_row, Activation};
use crate::error::{invalid, Result};

/// Probability clipping bound of the cross entropies (Keras' `epsilon()`).
pub const PROB_EPSILON: f32 = 1e-7;

/// A loss function and its options.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Loss {
    MeanSquaredError,
    CategoricalCrossentropy {
        #[serde(default)]
        from_logits: bool,
    },
    SparseCategoricalCrossentropy {
        #[serde(default)]
        from_logits: bool,
    },
}

/// Where the gradient written by [`Loss::evaluate`] points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientAt {
    /// `dL/da`: the last activation's backward still has to run.
    Output,
    /// `dL/dz`: the loss absorbed the last activation (softmax + cross entropy fused).
    PreActivation,
}

/// One sample's target row, dense or as a class index.
#[derive(Clone, Copy)]
enum Target<'a> {
    Dense(&'a [f32]),
    Class(usize),
}

impl Target<'_> {
    #[inline]
    fn at(&self, j: usize) -> f32 {
        match *self {
            Target::Dense(row) => row[j],
            Target::Class(c) => (c == j) as u8 as f32,
        }
    }
}

impl Loss {
    /// Number of target values per sample for an output of `out_width` values.
    pub fn target_width(&self, out_width: usize) -> usize {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => 1,
            _ => out_width,
        }
    }

    /// Whether the loss takes over the backward pass of a final `act`.
    pub fn fuses_with(&self, act: Activation) -> bool {
        matches!(
            self,
            Loss::CategoricalCrossentropy { from_logits: false }
                | Loss::SparseCategoricalCrossentropy { from_logits: false }
        ) && act == Activation::Softmax
    }

    /// Checks the targets once before training: finite values, integer labels in range.
    pub fn validate_targets(&self, y: &[f32], out_width: usize) -> Result<()> {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "y contains NaN or Inf (at flat index {i})"
            )));
        }
        if let Loss::SparseCategoricalCrossentropy { .. } = self {
            if let Some(&bad) = y
                .iter()
                .find(|&&v| v < 0.0 || v >= out_width as f32 || v.fract() != 0.0)
            {
                return Err(invalid(format!(
                    "labels must be integers in [0, {out_width}) for an output of {out_width} units; found {bad}"
                )));
            }
        }
        Ok(())
    }

    /// Sum over the `rows` samples of the per-sample loss. When `grad` is given it receives the
    /// gradient of `scale * sum` (use `scale = 1/batch` for the batch mean), with respect to the
    /// output or, when `fused`, to the last pre-activation.
    pub fn evaluate(
        &self,
        out: &[f32],
        y: &[f32],
        rows: usize,
        cols: usize,
        fused: bool,
        scale: f32,
        mut grad: Option<&mut [f32]>,
    ) -> f64 {
        let tw = self.target_width(cols);
        let mut total = 0.0f64;
        for i in 0..rows {
            let a = &out[i * cols..(i + 1) * cols];
            let yrow = &y[i * tw..(i + 1) * tw];
            let target = match self {
                Loss::SparseCategoricalCrossentropy { .. } => Target::Class(yrow[0] as usize),
                _ => Target::Dense(yrow),
            };
            let g = grad
                .as_deref_mut()
                .map(|g| &mut g[i * cols..(i + 1) * cols]);
            total += match *self {
                Loss::MeanSquaredError => mse_row(a, target, scale, g),
                Loss::CategoricalCrossentropy { from_logits }
                | Loss::SparseCategoricalCrossentropy { from_logits } => {
                    if from_logits {
                        ce_logits_row(a, target, scale, g)
                    } else if fused {
                        ce_fused_softmax_row(a, target, scale, g)
                    } else {
                        ce_probabilities_row(a, target, scale, g)
                    }
                }
            };
        }
        total
    }
}

fn mse_row(a: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let k = a.len() as f32;
    let sq: f64 = a
        .iter()
        .enumerate()
        .map(|(j, &v)| ((v - y.at(j)) as f64).powi(2))
        .sum();
    if let Some(g) = grad {
        let c = 2.0 * scale / k;
        g.iter_mut()
            .enumerate()
            .for_each(|(j, g)| *g = c * (a[j] - y.at(j)));
    }
    sq / k as f64
}

/// Cross entropy on softmax probabilities whose gradient goes straight to the logits: `a - y`.
fn ce_fused_softmax_row(a: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let loss = clipped_log_loss(a, 1.0, y);
    if let Some(g) = grad {
        g.iter_mut()
            .enumerate()
            .for_each(|(j, g)| *g = scale * (a[j] - y.at(j)));
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
            let gp = if p > PROB_EPSILON && p < 1.0 - PROB_EPSILON {
                -y.at(j) / p
            } else {
                0.0
            };
            g[j] = gp;
            dot += gp * p;
        }
        g.iter_mut().for_each(|g| *g = scale * (*g - dot) / s);
    }
    loss
}

/// Cross entropy from logits through a stable log-softmax; gradient `softmax(z) - y`.
fn ce_logits_row(z: &[f32], y: Target<'_>, scale: f32, grad: Option<&mut [f32]>) -> f64 {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64
        + z.iter()
            .map(|&v| ((v - max) as f64).exp())
            .sum::<f64>()
            .ln();
    let loss: f64 = (0..z.len())
        .map(|j| y.at(j) as f64 * (lse - z[j] as f64))
        .sum();
    if let Some(g) = grad {
        g.copy_from_slice(z);
        softmax_row(g);
        let ysum: f32 = (0..z.len()).map(|j| y.at(j)).sum();
        // For targets that sum to 1 this is p - y; the general form keeps unnormalised targets exact.
        g.iter_mut()
            .enumerate()
            .for_each(|(j, g)| *g = scale * (ysum * *g - y.at(j)));
    }
    loss
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
            loss.evaluate(&a, y, 1, cols, fused, 1.0, None)
        };
        let mut a = z.to_vec();
        if fused {
            last.forward_row(&mut a);
        }
        let mut g = vec![0.0; cols];
        loss.evaluate(&a, y, 1, cols, fused, 1.0, Some(&mut g));
        for i in 0..cols {
            let h = 1e-3;
            let (mut p, mut m) = (z.to_vec(), z.to_vec());
            p[i] += h;
            m[i] -= h;
            let num = (value(&p) - value(&m)) / (2.0 * h as f64);
            assert!(
                (num - g[i] as f64).abs() < 3e-3 * (1.0 + num.abs()),
                "{loss:?} d[{i}]: {num} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn gradients_match_central_differences() {
        let z = [0.3, -0.8, 1.4];
        let probs = [0.2, 0.5, 0.3];
        let onehot = [0.0, 0.0, 1.0];
        check(
            Loss::MeanSquaredError,
            &z,
            &[0.1, 0.2, -0.3],
            Activation::Linear,
        );
        check(
            Loss::CategoricalCrossentropy { from_logits: true },
            &z,
            &onehot,
            Activation::Linear,
        );
        check(
            Loss::CategoricalCrossentropy { from_logits: false },
            &probs,
            &onehot,
            Activation::Linear,
        );
        check(
            Loss::CategoricalCrossentropy { from_logits: false },
            &z,
            &onehot,
            Activation::Softmax,
        );
        check(
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            &z,
            &[1.0],
            Activation::Linear,
        );
        check(
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &z,
            &[0.0],
            Activation::Softmax,
        );
        check(
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &probs,
            &[1.0],
            Activation::Linear,
        );
    }

    #[test]
    fn values_match_closed_forms() {
        // MSE of [1, 2] against [0, 0] = (1 + 4) / 2.
        let v = Loss::MeanSquaredError.evaluate(&[1.0, 2.0], &[0.0, 0.0], 1, 2, false, 1.0, None);
        assert!((v - 2.5).abs() < 1e-9);
        // CE from logits [0, 0] = ln 2 for either class.
        let v = Loss::SparseCategoricalCrossentropy { from_logits: true }.evaluate(
            &[0.0, 0.0],
            &[1.0],
            1,
            2,
            false,
            1.0,
            None,
        );
        assert!((v - std::f64::consts::LN_2).abs() < 1e-6);
        // Huge logits do not overflow.
        let v = Loss::CategoricalCrossentropy { from_logits: true }.evaluate(
            &[1e4, -1e4],
            &[0.0, 1.0],
            1,
            2,
            false,
            1.0,
            None,
        );
        assert!((v - 2e4).abs() < 1.0);
    }

    #[test]
    fn label_validation_names_the_range() {
        let l = Loss::SparseCategoricalCrossentropy { from_logits: false };
        assert!(l.validate_targets(&[0.0, 2.0], 3).is_ok());
        let e = l.validate_targets(&[0.0, 3.0], 3).unwrap_err().to_string();
        assert!(e.contains("[0, 3)"), "{e}");
        assert!(l.validate_targets(&[0.5], 3).is_err());
        assert!(Loss::MeanSquaredError
            .validate_targets(&[f32::NAN], 1)
            .is_err());
    }
}
