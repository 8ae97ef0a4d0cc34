//! Weight initializers (note 004 "Inicialización": Glorot and Bengio 2010, He et al. 2015), with
//! Keras' definitions:
//!
//! - Glorot uniform `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`; Glorot normal: truncated
//!   normal with `stddev = sqrt(2 / (fan_in + fan_out))`
//! - He uniform `l = sqrt(6 / fan_in)`; He normal `stddev = sqrt(2 / fan_in)`
//! - LeCun uniform `l = sqrt(3 / fan_in)`; LeCun normal `stddev = sqrt(1 / fan_in)`
//! - random normal / uniform with given parameters; zeros, ones, constant
//!
//! The "normal" variance-scaling initializers draw from a normal truncated at two standard
//! deviations, whose standard deviation is corrected by `1 / 0.8796` so the variance is the
//! stated one (as Keras does). Fans of a kernel of shape `(..., in, out)` multiply `in` and `out`
//! by the receptive field (the product of the leading dimensions): `(kh, kw, in, out)` has
//! `fan_in = kh kw in`.

use serde::{Deserialize, Serialize};

use crate::rng::Stream;

/// Standard deviation of a standard normal truncated to `[-2, 2]`.
const TRUNCATED_STDDEV: f32 = 0.879_625_7;

/// How a parameter tensor is filled when the model is built.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Initializer {
    #[default]
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
    RandomNormal {
        #[serde(default)]
        mean: f32,
        #[serde(default = "small")]
        stddev: f32,
    },
    RandomUniform {
        #[serde(default = "neg_small")]
        minval: f32,
        #[serde(default = "small")]
        maxval: f32,
    },
    Zeros,
    Ones,
    Constant {
        #[serde(default)]
        value: f32,
    },
}

fn small() -> f32 {
    0.05
}
fn neg_small() -> f32 {
    -0.05
}

/// `(fan_in, fan_out)` of a tensor shape, as Keras computes them.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape.len() {
        0 => (1, 1),
        1 => (shape[0], shape[0]),
        n => {
            let receptive: usize = shape[..n - 2].iter().product();
            (shape[n - 2] * receptive, shape[n - 1] * receptive)
        }
    }
}

impl Initializer {
    /// Fills `data`, a tensor of `shape`, from `rng`.
    pub fn fill(&self, data: &mut [f32], shape: &[usize], rng: &mut Stream) {
        let (fan_in, fan_out) = fans(shape);
        let (fi, fo) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        let uniform = |data: &mut [f32], rng: &mut Stream, lo: f32, hi: f32| {
            data.iter_mut().for_each(|v| *v = lo + (hi - lo) * rng.uniform())
        };
        let truncated = |data: &mut [f32], rng: &mut Stream, stddev: f32| {
            let s = stddev / TRUNCATED_STDDEV;
            data.iter_mut().for_each(|v| *v = s * rng.truncated_normal())
        };
        match *self {
            Initializer::GlorotUniform => {
                let l = (6.0 / (fi + fo)).sqrt();
                uniform(data, rng, -l, l)
            }
            Initializer::HeUniform => {
                let l = (6.0 / fi).sqrt();
                uniform(data, rng, -l, l)
            }
            Initializer::LecunUniform => {
                let l = (3.0 / fi).sqrt();
                uniform(data, rng, -l, l)
            }
            Initializer::GlorotNormal => truncated(data, rng, (2.0 / (fi + fo)).sqrt()),
            Initializer::HeNormal => truncated(data, rng, (2.0 / fi).sqrt()),
            Initializer::LecunNormal => truncated(data, rng, (1.0 / fi).sqrt()),
            Initializer::RandomNormal { mean, stddev } => {
                data.iter_mut().for_each(|v| *v = mean + stddev * rng.normal())
            }
            Initializer::RandomUniform { minval, maxval } => uniform(data, rng, minval, maxval),
            Initializer::Zeros => data.fill(0.0),
            Initializer::Ones => data.fill(1.0),
            Initializer::Constant { value } => data.fill(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(init: Initializer, shape: &[usize]) -> (f64, f64, f32) {
        let mut w = vec![0.0; shape.iter().product()];
        init.fill(&mut w, shape, &mut Stream::new(0, 0));
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var, w.iter().fold(0.0f32, |m, v| m.max(v.abs())))
    }

    #[test]
    fn variance_scaling_initializers_have_the_published_variance_and_bounds() {
        let shape = [300, 100];
        let cases = [
            (Initializer::GlorotUniform, 2.0 / 400.0, Some((6.0f32 / 400.0).sqrt())),
            (Initializer::GlorotNormal, 2.0 / 400.0, Some(2.0 * (2.0f32 / 400.0).sqrt() / TRUNCATED_STDDEV)),
            (Initializer::HeUniform, 2.0 / 300.0, Some((6.0f32 / 300.0).sqrt())),
            (Initializer::HeNormal, 2.0 / 300.0, Some(2.0 * (2.0f32 / 300.0).sqrt() / TRUNCATED_STDDEV)),
            (Initializer::LecunUniform, 1.0 / 300.0, Some((3.0f32 / 300.0).sqrt())),
            (Initializer::LecunNormal, 1.0 / 300.0, Some(2.0 * (1.0f32 / 300.0).sqrt() / TRUNCATED_STDDEV)),
        ];
        for (init, want_var, bound) in cases {
            let (mean, var, max) = stats(init, &shape);
            assert!(mean.abs() < 3e-3, "{init:?} mean {mean}");
            assert!((var / want_var - 1.0).abs() < 0.03, "{init:?} var {var} want {want_var}");
            if let Some(b) = bound {
                assert!(max <= b * 1.0001, "{init:?} max {max} bound {b}");
            }
        }
    }

    #[test]
    fn conv_kernel_fans_include_the_receptive_field() {
        assert_eq!(fans(&[3, 3, 16, 32]), (144, 288));
        assert_eq!(fans(&[10, 20]), (10, 20));
        assert_eq!(fans(&[7]), (7, 7));
    }

    #[test]
    fn constant_kinds() {
        let mut w = vec![9.0; 4];
        Initializer::Ones.fill(&mut w, &[4], &mut Stream::new(0, 0));
        assert_eq!(w, [1.0; 4]);
        Initializer::Constant { value: 0.25 }.fill(&mut w, &[4], &mut Stream::new(0, 0));
        assert_eq!(w, [0.25; 4]);
        let (mean, var, _) = stats(Initializer::RandomNormal { mean: 1.0, stddev: 0.5 }, &[100_000]);
        assert!((mean - 1.0).abs() < 0.01 && (var - 0.25).abs() < 0.01);
        let (mean, _, max) = stats(Initializer::RandomUniform { minval: -2.0, maxval: 2.0 }, &[100_000]);
        assert!(mean.abs() < 0.03 && max <= 2.0);
    }
}
