//! RMSprop (Hinton; note 001, note 004), Keras' form:
//! `s <- rho s + (1 - rho) g^2`; centered: `a <- rho a + (1 - rho) g`, denominator `s - a^2 + eps`,
//! otherwise `s + eps`; increment `lr g / sqrt(denominator)`; with momentum
//! `b <- mu b + increment`, `w <- w - b`, otherwise `w <- w - increment`.

use super::{slots, Update};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct RmsProp {
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
    pub centered: bool,
    pub velocity: Vec<f32>,
    /// Running mean gradient (used when centered).
    pub average: Vec<f32>,
    /// Momentum buffer (used when momentum > 0).
    pub momentum_buf: Vec<f32>,
}

impl RmsProp {
    pub fn new(rho: f32, momentum: f32, epsilon: f32, centered: bool, n: usize) -> Result<Self> {
        // The general path sweeps three buffers; allocate them once when it is needed at all.
        let extra = if centered || momentum > 0.0 { n } else { 0 };
        Ok(Self {
            rho,
            momentum,
            epsilon,
            centered,
            velocity: slots(n)?,
            average: slots(extra)?,
            momentum_buf: slots(extra)?,
        })
    }

    /// One update of the trainable runs (see [`Update`]).
    pub fn step(&mut self, u: Update<'_>) {
        let (rho, mu, eps, centered, lr) = (self.rho, self.momentum, self.epsilon, self.centered, u.lr as f32);
        let plain = |w: &mut [f32], g: &[f32], [s]: [&mut [f32]; 1]| {
            for i in 0..w.len() {
                s[i] = rho * s[i] + (1.0 - rho) * g[i] * g[i];
                w[i] -= lr * g[i] / (s[i] + eps).sqrt();
            }
        };
        let general = |w: &mut [f32], g: &[f32], [s, a, b]: [&mut [f32]; 3]| {
            for i in 0..w.len() {
                s[i] = rho * s[i] + (1.0 - rho) * g[i] * g[i];
                let denom = if centered {
                    a[i] = rho * a[i] + (1.0 - rho) * g[i];
                    s[i] - a[i] * a[i] + eps
                } else {
                    s[i] + eps
                };
                let inc = lr * g[i] / denom.sqrt();
                if mu > 0.0 {
                    b[i] = mu * b[i] + inc;
                    w[i] -= b[i];
                } else {
                    w[i] -= inc;
                }
            }
        };
        if self.average.is_empty() {
            u.sweep([&mut self.velocity], plain);
        } else {
            u.sweep([&mut self.velocity, &mut self.average, &mut self.momentum_buf], general);
        }
    }
}
