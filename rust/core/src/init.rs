//! Weight initializers (note 004 "Inicialización": Glorot and Bengio 2010).
//!
//! Glorot uniform draws from `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`, keeping the
//! variance of activations and gradients roughly constant across layers.

use serde::{Deserialize, Serialize};

use crate::rng::Stream;

/// How a parameter tensor is filled when the model is built.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Initializer {
    #[default]
    GlorotUniform,
    Zeros,
}

impl Initializer {
    /// Fills `data` for a tensor with the given fans.
    pub fn fill(&self, data: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut Stream) {
        match self {
            Initializer::Zeros => data.fill(0.0),
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f32).sqrt();
                data.iter_mut()
                    .for_each(|v| *v = (2.0 * rng.uniform() - 1.0) * limit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_uniform_has_the_published_limit_and_variance() {
        let (fi, fo) = (300, 100);
        let mut w = vec![0.0; fi * fo];
        Initializer::GlorotUniform.fill(&mut w, fi, fo, &mut Stream::new(0, 0));
        let limit = (6.0f32 / 400.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        // Var(U(-l, l)) = l^2 / 3 = 2 / (fan_in + fan_out).
        let var = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var - 2.0 / 400.0).abs() < 2e-4, "{var}");
    }
}
