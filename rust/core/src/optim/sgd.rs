//! Stochastic gradient descent with optional classical or Nesterov momentum (note 004), in Keras'
//! formulation:
//! - plain: `w <- w - lr g`
//! - momentum: `v <- mu v - lr g`, `w <- w + v`
//! - Nesterov: `v <- mu v - lr g`, `w <- w + mu v - lr g`

use super::{sweep, sweep1};

#[derive(Clone, Debug)]
pub struct Sgd {
    pub learning_rate: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub iterations: u64,
    /// Velocity `v`; empty when `momentum == 0` (no state needed).
    pub velocity: Vec<f32>,
}

impl Sgd {
    pub fn new(learning_rate: f32, momentum: f32, nesterov: bool, n: usize) -> Self {
        let velocity = if momentum > 0.0 { vec![0.0; n] } else { Vec::new() };
        Self { learning_rate, momentum, nesterov, iterations: 0, velocity }
    }

    pub fn step(&mut self, w: &mut [f32], g: &[f32]) {
        let (lr, mu, nesterov) = (self.learning_rate, self.momentum, self.nesterov);
        if self.velocity.is_empty() {
            sweep(w, g, |w, g| w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g));
        } else {
            sweep1(w, g, &mut self.velocity, |w, g, v| {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                    *v = mu * *v - lr * g;
                    *w += if nesterov { mu * *v - lr * g } else { *v };
                }
            });
        }
        self.iterations += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRADS: [[f32; 3]; 5] =
        [[0.5, -1.0, 2.0], [0.1, 0.3, -0.7], [-0.4, 0.2, 0.0], [1.5, -0.5, 0.25], [0.0, 0.9, -1.1]];

    /// Five steps against the update rule written out in f64.
    fn run(momentum: f32, nesterov: bool) {
        let lr = 0.1f64;
        let mut opt = Sgd::new(lr as f32, momentum, nesterov, 3);
        let mut w = [1.0f32, -2.0, 0.5];
        let mut rw = [1.0f64, -2.0, 0.5];
        let mut rv = [0.0f64; 3];
        let mu = momentum as f64;
        for g in GRADS {
            opt.step(&mut w, &g);
            for i in 0..3 {
                let g = g[i] as f64;
                if mu == 0.0 {
                    rw[i] -= lr * g;
                } else {
                    rv[i] = mu * rv[i] - lr * g;
                    rw[i] += if nesterov { mu * rv[i] - lr * g } else { rv[i] };
                }
            }
        }
        for i in 0..3 {
            assert!((w[i] as f64 - rw[i]).abs() < 1e-5, "momentum {momentum} nesterov {nesterov}: {w:?} vs {rw:?}");
        }
        assert_eq!(opt.iterations, 5);
    }

    #[test]
    fn plain_momentum_and_nesterov_follow_their_formulas() {
        run(0.0, false);
        run(0.9, false);
        run(0.9, true);
    }

    #[test]
    fn large_models_take_the_parallel_path_with_the_same_result() {
        let n = 100_000;
        let g: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) / 10.0).collect();
        let mut serial = vec![0.5f32; n];
        let mut par = serial.clone();
        let mut a = Sgd::new(0.05, 0.9, true, n);
        let mut b = a.clone();
        rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| a.step(&mut serial, &g));
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap().install(|| b.step(&mut par, &g));
        assert_eq!(serial, par);
    }
}
