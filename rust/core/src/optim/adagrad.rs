//! AdaGrad (Duchi et al. 2011; note 001), Keras' form: `a <- a + g^2`,
//! `w <- w - lr g / sqrt(a + eps)`, with the accumulator starting at
//! `initial_accumulator_value`.

use std::ops::Range;

use super::sweep_with;

#[derive(Clone, Debug)]
pub struct Adagrad {
    pub epsilon: f32,
    pub accumulator: Vec<f32>,
}

impl Adagrad {
    pub fn new(initial_accumulator_value: f32, epsilon: f32, n: usize) -> Self {
        Self { epsilon, accumulator: vec![initial_accumulator_value; n] }
    }

    /// Updates the runs `segments` of the buffers (whole-buffer indices; frozen tensors lie
    /// outside them and keep their values and state).
    pub fn step(&mut self, w: &mut [f32], g: &[f32], lr: f32, segments: impl IntoIterator<Item = Range<usize>>) {
        let eps = self.epsilon;
        let adagrad = |w: &mut [f32], g: &[f32], [a]: [&mut [f32]; 1]| {
            for i in 0..w.len() {
                a[i] += g[i] * g[i];
                w[i] -= lr * g[i] / (a[i] + eps).sqrt();
            }
        };
        for r in segments {
            sweep_with(&mut w[r.clone()], &g[r.clone()], [&mut self.accumulator[r]], adagrad);
        }
    }
}
