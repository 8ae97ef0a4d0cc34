//! Adamax (Kingma and Ba 2015, §7.1), Keras' form: `m <- b1 m + (1 - b1) g`,
//! `u <- max(b2 u, |g|)`, `w <- w - lr / (1 - b1^t) * m / (u + eps)`.

use super::{slots, Update};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Adamax {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub m: Vec<f32>,
    pub u: Vec<f32>,
}

impl Adamax {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, n: usize) -> Result<Self> {
        Ok(Self { beta_1, beta_2, epsilon, m: slots(n)?, u: slots(n)? })
    }

    /// One update of the trainable runs (see [`Update`]).
    pub fn step(&mut self, u: Update<'_>) {
        let (lr, t) = (u.lr, u.t);
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let lr_t = (lr / (1.0 - (b1 as f64).powf(t as f64))) as f32;
        let adamax = |w: &mut [f32], g: &[f32], [m, u]: [&mut [f32]; 2]| {
            for i in 0..w.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                u[i] = (b2 * u[i]).max(g[i].abs());
                w[i] -= lr_t * m[i] / (u[i] + eps);
            }
        };
        u.sweep([&mut self.m, &mut self.u], adamax);
    }
}
