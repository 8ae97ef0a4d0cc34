//! Stochastic gradient descent with optional classical or Nesterov momentum (note 004), in Keras'
//! formulation:
//! - plain: `w <- w - lr g`
//! - momentum: `v <- mu v - lr g`, `w <- w + v`
//! - Nesterov: `v <- mu v - lr g`, `w <- w + mu v - lr g`

use super::{slots, Update};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    /// Velocity `v`; empty when `momentum == 0` (no state needed).
    pub velocity: Vec<f32>,
}

impl Sgd {
    pub fn new(momentum: f32, nesterov: bool, n: usize) -> Result<Self> {
        let velocity = slots(if momentum > 0.0 { n } else { 0 })?;
        Ok(Self { momentum, nesterov, velocity })
    }

    /// One update of the trainable runs (see [`Update`]).
    pub fn step(&mut self, u: Update<'_>) {
        let (mu, nesterov, lr) = (self.momentum, self.nesterov, u.lr as f32);
        let plain = |w: &mut [f32], g: &[f32], []: [&mut [f32]; 0]| w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
        let momentum = |w: &mut [f32], g: &[f32], [v]: [&mut [f32]; 1]| {
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v - lr * g;
                *w += if nesterov { mu * *v - lr * g } else { *v };
            }
        };
        if self.velocity.is_empty() {
            u.sweep([], plain);
        } else {
            u.sweep([&mut self.velocity], momentum);
        }
    }
}
