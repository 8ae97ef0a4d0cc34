//! AdaGrad (Duchi et al. 2011; note 001), Keras' form: `a <- a + g^2`,
//! `w <- w - lr g / sqrt(a + eps)`, with the accumulator starting at
//! `initial_accumulator_value`.

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

    pub fn step(&mut self, w: &mut [f32], g: &[f32], lr: f32) {
        let eps = self.epsilon;
        sweep_with(w, g, [&mut self.accumulator[..]], |w, g, [a]| {
            for i in 0..w.len() {
                a[i] += g[i] * g[i];
                w[i] -= lr * g[i] / (a[i] + eps).sqrt();
            }
        });
    }
}
