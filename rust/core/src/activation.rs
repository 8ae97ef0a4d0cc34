//! Activation functions applied row by row to a `rows x cols` buffer, forward in place and backward
//! from the layer's *output* (every activation here has a derivative expressible in its output,
//! so the pre-activation need not be kept).
//!
//! Formulas (note 000 "Funciones de activación", note 003):
//! - sigmoid `s(z) = 1 / (1 + e^-z)`, `s' = s (1 - s)`
//! - tanh `t' = 1 - t^2`
//! - ReLU `max(0, z)`, derivative 1 for `z > 0`, else 0
//! - softmax `a_i = e^{z_i - max z} / sum_j e^{z_j - max z}`; backward `g_i <- a_i (g_i - sum_j g_j a_j)`

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Element count above which a pass is split across threads.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// The activation of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
}

/// Numerically stable logistic function: never evaluates `exp` of a large positive number.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Softmax of one row in place, shifted by the row maximum so no `exp` overflows.
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Runs `f` on each row of `data` (rows of `cols`), in parallel when the buffer is large.
pub(crate) fn for_each_row(data: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if cols == 0 {
        return;
    }
    if data.len() >= PARALLEL_MIN_ELEMS && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        data.chunks_mut(cols).enumerate().for_each(|(i, r)| f(i, r));
    }
}

impl Activation {
    /// `row <- act(row)` for one sample.
    #[inline]
    pub fn forward_row(self, row: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => row.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Activation::Tanh => row.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Softmax => softmax_row(row),
        }
    }

    /// `grad <- dL/dz` given `grad = dL/da` and the output `a` of one sample.
    #[inline]
    pub fn backward_row(self, out: &[f32], grad: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => grad.iter_mut().zip(out).for_each(|(g, &a)| {
                if a <= 0.0 {
                    *g = 0.0
                }
            }),
            Activation::Sigmoid => grad
                .iter_mut()
                .zip(out)
                .for_each(|(g, &a)| *g *= a * (1.0 - a)),
            Activation::Tanh => grad
                .iter_mut()
                .zip(out)
                .for_each(|(g, &a)| *g *= 1.0 - a * a),
            Activation::Softmax => {
                let dot: f32 = grad.iter().zip(out).map(|(g, a)| g * a).sum();
                grad.iter_mut()
                    .zip(out)
                    .for_each(|(g, &a)| *g = a * (*g - dot));
            }
        }
    }

    /// Forward over a `rows x cols` buffer.
    pub fn forward(self, data: &mut [f32], cols: usize) {
        if self != Activation::Linear {
            for_each_row(data, cols, |_, r| self.forward_row(r));
        }
    }

    /// Backward over a `rows x cols` buffer.
    pub fn backward(self, out: &[f32], grad: &mut [f32], cols: usize) {
        if self != Activation::Linear {
            for_each_row(grad, cols, |i, g| {
                self.backward_row(&out[i * cols..(i + 1) * cols], g)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 5] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
    ];

    /// Finite-difference check of `backward` through a random linear read-out `L = sum_i w_i a_i`.
    #[test]
    fn backward_matches_central_differences() {
        let z0: Vec<f32> = vec![-1.7, -0.4, 0.3, 0.9, 2.2];
        let w: Vec<f32> = vec![0.3, -1.1, 0.7, 0.2, -0.5];
        for act in ALL {
            let loss = |z: &[f64]| -> f64 {
                let mut a: Vec<f32> = z.iter().map(|&v| v as f32).collect();
                act.forward_row(&mut a);
                a.iter().zip(&w).map(|(&a, &w)| a as f64 * w as f64).sum()
            };
            let mut a = z0.clone();
            act.forward_row(&mut a);
            let mut g = w.clone();
            act.backward_row(&a, &mut g);
            let zd: Vec<f64> = z0.iter().map(|&v| v as f64).collect();
            for i in 0..z0.len() {
                let h = 1e-3;
                let (mut p, mut m) = (zd.clone(), zd.clone());
                p[i] += h;
                m[i] -= h;
                let num = (loss(&p) - loss(&m)) / (2.0 * h);
                assert!(
                    (num - g[i] as f64).abs() < 2e-3,
                    "{act:?} dz[{i}]: numeric {num} analytic {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn extreme_inputs_stay_finite() {
        for act in ALL {
            let mut r = vec![-1e4, -88.0, 0.0, 88.0, 1e4];
            act.forward_row(&mut r);
            assert!(r.iter().all(|v| v.is_finite()), "{act:?}: {r:?}");
        }
        let mut r = vec![1e4, 0.0];
        softmax_row(&mut r);
        assert_eq!(r, vec![1.0, 0.0]);
    }
}
