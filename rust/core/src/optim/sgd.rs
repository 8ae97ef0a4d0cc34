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
