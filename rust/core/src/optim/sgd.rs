//! Stochastic gradient descent with optional classical or Nesterov momentum (note 004), in Keras'
//! formulation:
//! - plain: `w <- w - lr g`
//! - momentum: `v <- mu v - lr g`, `w <- w + v`
//! - Nesterov: `v <- mu v - lr g`, `w <- w + mu v - lr g`

use std::ops::Range;

use super::{sweep, sweep_with};

#[derive(Clone, Debug)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    /// Velocity `v`; empty when `momentum == 0` (no state needed).
    pub velocity: Vec<f32>,
}

impl Sgd {
    pub fn new(momentum: f32, nesterov: bool, n: usize) -> Self {
        let velocity = if momentum > 0.0 { vec![0.0; n] } else { Vec::new() };
        Self { momentum, nesterov, velocity }
    }

    /// Updates the runs `segments` of the buffers (whole-buffer indices; frozen tensors lie
    /// outside them and keep their values and state).
    pub fn step(&mut self, w: &mut [f32], g: &[f32], lr: f32, segments: impl IntoIterator<Item = Range<usize>>) {
        let (mu, nesterov) = (self.momentum, self.nesterov);
        let plain = |w: &mut [f32], g: &[f32]| w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
        let momentum = |w: &mut [f32], g: &[f32], [v]: [&mut [f32]; 1]| {
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v - lr * g;
                *w += if nesterov { mu * *v - lr * g } else { *v };
            }
        };
        for r in segments {
            if self.velocity.is_empty() {
                sweep(&mut w[r.clone()], &g[r], plain);
            } else {
                sweep_with(&mut w[r.clone()], &g[r.clone()], [&mut self.velocity[r]], momentum);
            }
        }
    }
}
