//! Nadam (Dozat 2016: Adam with Nesterov momentum), Keras' form with the momentum schedule
//! `u_t = b1 (1 - 0.5 * 0.96^(0.004 t))`:
//!
//! `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `m_hat = u_{t+1} m / (1 - prod_{i<=t+1} u_i) + (1 - u_t) g / (1 - prod_{i<=t} u_i)`,
//! `v_hat = v / (1 - b2^t)`, `w <- w - lr m_hat / (sqrt(v_hat) + eps)`.

use super::{slots, Update};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Nadam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// `prod_{i<=t} u_i` after `t` updates.
    pub u_product: f64,
}

impl Nadam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, n: usize) -> Result<Self> {
        Ok(Self { beta_1, beta_2, epsilon, m: slots(n)?, v: slots(n)?, u_product: 1.0 })
    }

    /// One update of the trainable runs (see [`Update`]). The momentum-schedule product advances
    /// once per call, whatever the runs.
    pub fn step(&mut self, u: Update<'_>) {
        let (lr, t) = (u.lr, u.t);
        let (b1, b2, eps) = (self.beta_1 as f64, self.beta_2, self.epsilon);
        let t = t as f64;
        let u_t = b1 * (1.0 - 0.5 * 0.96f64.powf(0.004 * t));
        let u_next = b1 * (1.0 - 0.5 * 0.96f64.powf(0.004 * (t + 1.0)));
        let prod_t = self.u_product * u_t;
        let prod_next = prod_t * u_next;
        self.u_product = prod_t;
        let c_m = (u_next / (1.0 - prod_next)) as f32;
        let c_g = ((1.0 - u_t) / (1.0 - prod_t)) as f32;
        let v_corr = (1.0 / (1.0 - (b2 as f64).powf(t))) as f32;
        let (lr, b1) = (lr as f32, b1 as f32);
        let nadam = |w: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
            for i in 0..w.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                v[i] += (g[i] * g[i] - v[i]) * (1.0 - b2);
                let m_hat = c_m * m[i] + c_g * g[i];
                w[i] -= lr * m_hat / ((v[i] * v_corr).sqrt() + eps);
            }
        };
        u.sweep([&mut self.m, &mut self.v], nadam);
    }
}
