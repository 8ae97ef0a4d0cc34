//! AdaGrad (Duchi et al. 2011; note 001), Keras' form: `a <- a + g^2`,
//! `w <- w - lr g / sqrt(a + eps)`, with the accumulator starting at
//! `initial_accumulator_value`.

use super::Update;
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Adagrad {
    pub epsilon: f32,
    pub accumulator: Vec<f32>,
}

impl Adagrad {
    pub fn new(initial_accumulator_value: f32, epsilon: f32, n: usize) -> Result<Self> {
        Ok(Self { epsilon, accumulator: crate::alloc::filled(n, initial_accumulator_value, "the optimizer's slots")? })
    }

    /// One update of the trainable runs (see [`Update`]).
    pub fn step(&mut self, u: Update<'_>) {
        let (eps, lr) = (self.epsilon, u.lr as f32);
        let adagrad = |w: &mut [f32], g: &[f32], [a]: [&mut [f32]; 1]| {
            for i in 0..w.len() {
                a[i] += g[i] * g[i];
                w[i] -= lr * g[i] / (a[i] + eps).sqrt();
            }
        };
        u.sweep([&mut self.accumulator], adagrad);
    }
}
