//! L-BFGS (Liu and Nocedal 1989; the quasi-Newton family of note 001): full-batch, for small
//! networks. Each call runs up to `max_iter` iterations:
//!
//! 1. direction `d = -H g` by the two-loop recursion over the last `history_size` pairs
//!    `s = w_{k+1} - w_k`, `y = g_{k+1} - g_k`, with `H_0 = (s.y / y.y) I`;
//! 2. step `t` by backtracking until Armijo's condition `f(w + t d) <= f(w) + c1 t g.d`
//!    (`c1 = 1e-4`), starting from `learning_rate` (first iteration: `min(1, 1/|g|_1) lr`);
//! 3. stop when `max |g| <= tolerance_grad` or the loss changes by less than `tolerance_change`.
//!
//! Pairs with `s.y <= 1e-10` are skipped, keeping `H` positive definite.

use crate::alloc::filled;
use crate::error::Result;

/// L-BFGS state: the curvature pairs, kept across calls, and work vectors allocated once.
#[derive(Clone, Debug)]
pub struct Lbfgs {
    pub max_iter: usize,
    pub history_size: usize,
    pub tolerance_grad: f64,
    pub tolerance_change: f64,
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    rho: Vec<f64>,
    alpha: Vec<f64>,
    dir: Vec<f64>,
    w0: Vec<f32>,
    g0: Vec<f64>,
}

const ARMIJO_C1: f64 = 1e-4;
const MAX_BACKTRACKS: usize = 30;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Lbfgs {
    pub fn new(
        max_iter: usize,
        history_size: usize,
        tolerance_grad: f64,
        tolerance_change: f64,
        n: usize,
    ) -> Result<Self> {
        let what = "L-BFGS's buffers";
        Ok(Self {
            max_iter,
            history_size: history_size.max(1),
            tolerance_grad,
            tolerance_change,
            s: Vec::new(),
            y: Vec::new(),
            rho: Vec::new(),
            alpha: filled(history_size.max(1), 0.0, what)?,
            dir: filled(n, 0.0, what)?,
            w0: filled(n, 0.0, what)?,
            g0: filled(n, 0.0, what)?,
        })
    }

    /// The curvature pairs kept, as `(s, y)` flattened one after the other (for inspection).
    pub fn pairs(&self) -> usize {
        self.s.len()
    }

    /// `d = -H g` by the two-loop recursion.
    fn direction(&mut self, g: &[f64]) {
        let d = &mut self.dir;
        d.iter_mut().zip(g).for_each(|(d, g)| *d = -g);
        let k = self.s.len();
        for i in (0..k).rev() {
            self.alpha[i] = self.rho[i] * dot(&self.s[i], d);
            let a = self.alpha[i];
            d.iter_mut().zip(&self.y[i]).for_each(|(d, y)| *d -= a * y);
        }
        if k > 0 {
            let gamma = dot(&self.s[k - 1], &self.y[k - 1]) / dot(&self.y[k - 1], &self.y[k - 1]);
            d.iter_mut().for_each(|d| *d *= gamma);
        }
        for i in 0..k {
            let b = self.rho[i] * dot(&self.y[i], d);
            let a = self.alpha[i];
            d.iter_mut().zip(&self.s[i]).for_each(|(d, s)| *d += (a - b) * s);
        }
    }

    fn remember(&mut self, s: Vec<f64>, y: Vec<f64>) {
        let sy = dot(&s, &y);
        if sy <= 1e-10 {
            return;
        }
        if self.s.len() == self.history_size {
            self.s.remove(0);
            self.y.remove(0);
            self.rho.remove(0);
        }
        self.rho.push(1.0 / sy);
        self.s.push(s);
        self.y.push(y);
    }

    /// Minimises from `w`; `eval(w, grad)` returns the loss at `w` and writes its gradient.
    /// Returns the final loss and the number of function evaluations.
    pub fn run(
        &mut self,
        lr: f64,
        w: &mut [f32],
        grad: &mut [f32],
        mut eval: impl FnMut(&[f32], &mut [f32]) -> f64,
    ) -> (f64, usize) {
        let mut evals = 1;
        let mut loss = eval(w, grad);
        for iter in 0..self.max_iter {
            self.g0.iter_mut().zip(grad.iter()).for_each(|(a, &b)| *a = b as f64);
            let gmax = self.g0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if !loss.is_finite() || gmax <= self.tolerance_grad {
                break;
            }
            let g0 = std::mem::take(&mut self.g0);
            self.direction(&g0);
            let gtd = dot(&g0, &self.dir);
            if gtd > -self.tolerance_change {
                self.g0 = g0;
                break;
            }
            let mut t = if iter == 0 && self.s.is_empty() {
                lr * (1.0 / g0.iter().map(|v| v.abs()).sum::<f64>()).min(1.0)
            } else {
                lr
            };
            self.w0.copy_from_slice(w);
            let mut new_loss = f64::INFINITY;
            for _ in 0..MAX_BACKTRACKS {
                for ((w, &w0), &d) in w.iter_mut().zip(&self.w0).zip(&self.dir) {
                    *w = (w0 as f64 + t * d) as f32;
                }
                new_loss = eval(w, grad);
                evals += 1;
                if new_loss.is_finite() && new_loss <= loss + ARMIJO_C1 * t * gtd {
                    break;
                }
                t *= 0.5;
            }
            if !(new_loss.is_finite() && new_loss <= loss) {
                // No decrease found: restore the last point and its gradient.
                w.copy_from_slice(&self.w0);
                loss = eval(w, grad);
                evals += 1;
                self.g0 = g0;
                break;
            }
            let s: Vec<f64> = w.iter().zip(&self.w0).map(|(&a, &b)| a as f64 - b as f64).collect();
            let y: Vec<f64> = grad.iter().zip(&g0).map(|(&a, &b)| a as f64 - b).collect();
            self.g0 = g0;
            self.remember(s, y);
            let change = (loss - new_loss).abs();
            loss = new_loss;
            if change < self.tolerance_change {
                break;
            }
        }
        (loss, evals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rosenbrock function, a classic quasi-Newton benchmark: minimum 0 at (1, 1).
    #[test]
    fn minimises_rosenbrock() {
        let mut opt = Lbfgs::new(200, 10, 1e-9, 1e-14, 2).unwrap();
        let mut w = [-1.2f32, 1.0];
        let mut g = [0.0f32; 2];
        let (loss, _) = opt.run(1.0, &mut w, &mut g, |w, g| {
            let (x, y) = (w[0] as f64, w[1] as f64);
            g[0] = (-2.0 * (1.0 - x) - 400.0 * x * (y - x * x)) as f32;
            g[1] = (200.0 * (y - x * x)) as f32;
            (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
        });
        assert!(loss < 1e-6, "{loss} at {w:?}");
        assert!((w[0] - 1.0).abs() < 1e-2 && (w[1] - 1.0).abs() < 2e-2);
    }
}
