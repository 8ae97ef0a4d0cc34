//! Adamax (Kingma and Ba 2015, §7.1), Keras' form: `m <- b1 m + (1 - b1) g`,
//! `u <- max(b2 u, |g|)`, `w <- w - lr / (1 - b1^t) * m / (u + eps)`.

use std::ops::Range;

use super::sweep_with;

#[derive(Clone, Debug)]
pub struct Adamax {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub m: Vec<f32>,
    pub u: Vec<f32>,
}

impl Adamax {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, n: usize) -> Self {
        Self { beta_1, beta_2, epsilon, m: vec![0.0; n], u: vec![0.0; n] }
    }

    /// Updates the runs `segments` of the buffers (whole-buffer indices; frozen tensors lie
    /// outside them and keep their values and state).
    pub fn step(
        &mut self,
        w: &mut [f32],
        g: &[f32],
        lr: f64,
        t: u64,
        segments: impl IntoIterator<Item = Range<usize>>,
    ) {
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let lr_t = (lr / (1.0 - (b1 as f64).powf(t as f64))) as f32;
        let adamax = |w: &mut [f32], g: &[f32], [m, u]: [&mut [f32]; 2]| {
            for i in 0..w.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                u[i] = (b2 * u[i]).max(g[i].abs());
                w[i] -= lr_t * m[i] / (u[i] + eps);
            }
        };
        for r in segments {
            let (w, g) = (&mut w[r.clone()], &g[r.clone()]);
            sweep_with(w, g, [&mut self.m[r.clone()], &mut self.u[r]], adamax);
        }
    }
}
