//! Adam (Kingma and Ba 2015; note 002 §4.4, note 004), in Keras' formulation, which folds both
//! bias corrections into the step size:
//!
//! `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`, `w <- w - lr_t m / (sqrt(v) + eps)`.
//!
//! With `amsgrad`, `v_hat = max(v_hat, v)` replaces `v` in the denominator. AdamW is this rule
//! with decoupled weight decay (applied by the optimizer before the update).
//! (Note 002 writes `sqrt(v_hat + eps)`; the published form with `eps` outside the root is used.)

use super::{slots, Update};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Adam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Running maximum of `v` (AMSGrad); empty otherwise.
    pub v_hat: Vec<f32>,
}

impl Adam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, amsgrad: bool, n: usize) -> Result<Self> {
        let v_hat = slots(if amsgrad { n } else { 0 })?;
        Ok(Self { beta_1, beta_2, epsilon, m: slots(n)?, v: slots(n)?, v_hat })
    }

    /// One update of the trainable runs (see [`Update`]); the bias corrections use its number `t`.
    pub fn step(&mut self, u: Update<'_>) {
        let (lr, t) = (u.lr, u.t);
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        // Bias corrections in f64: b^t stays exact for small t and underflows gracefully.
        let t = t as f64;
        let lr_t = (lr * (1.0 - (b2 as f64).powf(t)).sqrt() / (1.0 - (b1 as f64).powf(t))) as f32;
        let adam = |w: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m += (g - *m) * (1.0 - b1);
                *v += (g * g - *v) * (1.0 - b2);
                *w -= lr_t * *m / (v.sqrt() + eps);
            }
        };
        let amsgrad = |w: &mut [f32], g: &[f32], [m, v, vh]: [&mut [f32]; 3]| {
            for i in 0..w.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                v[i] += (g[i] * g[i] - v[i]) * (1.0 - b2);
                vh[i] = vh[i].max(v[i]);
                w[i] -= lr_t * m[i] / (vh[i].sqrt() + eps);
            }
        };
        if self.v_hat.is_empty() {
            u.sweep([&mut self.m, &mut self.v], adam);
        } else {
            u.sweep([&mut self.m, &mut self.v, &mut self.v_hat], amsgrad);
        }
    }
}
