//! Adam (Kingma and Ba 2015; note 002 §4.4, note 004), in Keras' formulation, which folds both
//! bias corrections into the step size:
//!
//! `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`, `w <- w - lr_t m / (sqrt(v) + eps)`.
//!
//! (Note 002 writes `sqrt(v_hat + eps)`; the published form with `eps` outside the root is used.)

use super::sweep2;

#[derive(Clone, Debug)]
pub struct Adam {
    pub learning_rate: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub iterations: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl Adam {
    pub fn new(learning_rate: f32, beta_1: f32, beta_2: f32, epsilon: f32, n: usize) -> Self {
        Self { learning_rate, beta_1, beta_2, epsilon, iterations: 0, m: vec![0.0; n], v: vec![0.0; n] }
    }

    pub fn step(&mut self, w: &mut [f32], g: &[f32]) {
        self.iterations += 1;
        let t = self.iterations as f64;
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        // Bias corrections in f64: b^t underflows gracefully and stays exact for small t.
        let lr_t =
            (self.learning_rate as f64 * (1.0 - (b2 as f64).powf(t)).sqrt() / (1.0 - (b1 as f64).powf(t))) as f32;
        sweep2(w, g, &mut self.m, &mut self.v, |w, g, m, v| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m += (g - *m) * (1.0 - b1);
                *v += (g * g - *v) * (1.0 - b2);
                *w -= lr_t * *m / (v.sqrt() + eps);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five steps against Kingma and Ba's algorithm with explicit bias correction, in f64.
    /// Keras' folded step `lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)` equals
    /// `lr m_hat / (sqrt(v_hat) + eps_hat)` with `eps_hat = eps sqrt(1-b2^t)`.
    #[test]
    fn five_steps_follow_the_published_rule() {
        let (lr, b1, b2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-7f64);
        let grads = [[0.5f32, -1.0, 2.0], [0.1, 0.3, -0.7], [-0.4, 0.2, 0.0], [1.5, -0.5, 0.25], [0.0, 0.9, -1.1]];
        let mut opt = Adam::new(lr as f32, b1 as f32, b2 as f32, eps as f32, 3);
        let mut w = [1.0f32, -2.0, 0.5];
        let (mut rw, mut m, mut v) = ([1.0f64, -2.0, 0.5], [0.0f64; 3], [0.0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            opt.step(&mut w, g);
            let t = (t + 1) as i32;
            for i in 0..3 {
                let g = g[i] as f64;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let m_hat = m[i] / (1.0 - b1.powi(t));
                let v_hat = v[i] / (1.0 - b2.powi(t));
                rw[i] -= lr * m_hat / (v_hat.sqrt() + eps * (1.0 - b2.powi(t)).sqrt());
            }
        }
        for i in 0..3 {
            assert!((w[i] as f64 - rw[i]).abs() < 1e-5, "{w:?} vs {rw:?}");
        }
        assert_eq!(opt.iterations, 5);
    }
}
