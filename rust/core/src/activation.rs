//! Activation functions applied row by row to a `rows x cols` buffer.
//!
//! Forward writes `a = f(z)`; backward turns `dL/da` into `dL/dz` in place, reading the output
//! `a` and, for the functions whose derivative is not a function of `a` alone
//! ([`Activation::needs_input`]), the pre-activation `z`. Every form is numerically stable for
//! `|z|` up to 1e4 (no `exp` of a large positive number, no `0 * inf`).
//!
//! Formulas (note 000 "Funciones de activación", note 001 "Escalón", note 002 appendix B):
//! - step (Heaviside, note 001): `1` if `z > 0` else `0`; derivative 0 everywhere
//! - sigmoid `s = 1 / (1 + e^-z)`, `s' = s (1 - s)`; tanh `t' = 1 - t^2`
//! - ReLU `max(0, z)`; leaky ReLU `z` if `z > 0` else `alpha z` (alpha 0.01, as the notes use)
//! - GELU `z Phi(z) = z/2 (1 + erf(z / sqrt 2))`; tanh form (note 000)
//!   `z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))`
//! - swish / SiLU (note 002) `z s(z)`, derivative `s + z s (1 - s)`
//! - softmax with temperature `tau` (note 002 appendix B): `a = softmax(z / tau)`,
//!   backward `g_i <- a_i (g_i - sum_j g_j a_j) / tau`
//! - ELU `z` or `alpha (e^z - 1)`; SELU `scale * elu(z, 1.6733)` with `scale = 1.0507`
//! - softplus `log(1 + e^z)`; softsign `z / (1 + |z|)`; hard sigmoid `clip(z/6 + 1/2, 0, 1)`
//! - mish `z tanh(softplus(z))`; log-softmax `z - logsumexp(z)`

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Element count above which a pass is split across threads.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// The activation of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Linear,
    Step,
    Relu,
    LeakyRelu {
        #[serde(default = "leaky_slope")]
        negative_slope: f32,
    },
    Sigmoid,
    Tanh,
    Gelu {
        #[serde(default)]
        approximate: bool,
    },
    Swish,
    Softmax {
        #[serde(default = "one")]
        temperature: f32,
    },
    Elu {
        #[serde(default = "one")]
        alpha: f32,
    },
    Selu,
    Softplus,
    Softsign,
    HardSigmoid,
    Mish,
    LogSoftmax,
}

/// Reads an activation as a layer's `get_config` holds it: a name (`"relu"`) or a spec with
/// arguments (`{"name": "leaky_relu", "negative_slope": 0.2}`); `null` is linear, as in Keras.
pub fn name_or_spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Activation, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(d)?;
    let value = match value {
        serde_json::Value::Null => return Ok(Activation::Linear),
        serde_json::Value::String(name) => serde_json::json!({ "name": name }),
        other => other,
    };
    serde_json::from_value(value).map_err(D::Error::custom)
}

fn leaky_slope() -> f32 {
    0.01
}
fn one() -> f32 {
    1.0
}

/// Numerically stable logistic function: never evaluates `exp` of a large positive number.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^z)` without overflow: `max(z, 0) + log1p(e^-|z|)`.
#[inline]
pub fn softplus(z: f32) -> f32 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Standard normal density.
#[inline]
fn phi(z: f32) -> f32 {
    (-0.5 * z * z).exp() * 0.398_942_3
}

/// Softmax of one row in place, shifted by the row maximum so no `exp` overflows.
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Runs `f(row_index, row)` on each row of `data` (rows of `cols`), in parallel over blocks of
/// rows when the buffer is large.
pub(crate) fn for_each_row(data: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if cols == 0 {
        return;
    }
    let block_rows = (CHUNK / cols).max(1);
    let block = |(b, chunk): (usize, &mut [f32])| {
        chunk.chunks_mut(cols).enumerate().for_each(|(i, r)| f(b * block_rows + i, r));
    };
    if data.len() >= PARALLEL_MIN_ELEMS && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(block_rows * cols).enumerate().for_each(block);
    } else {
        data.chunks_mut(block_rows * cols).enumerate().for_each(block);
    }
}

impl Activation {
    /// Whether backward needs the pre-activation `z` (otherwise the output `a` suffices).
    pub fn needs_input(self) -> bool {
        matches!(self, Activation::LeakyRelu { .. } | Activation::Gelu { .. } | Activation::Swish | Activation::Mish)
    }

    /// Whether the function has a zero derivative everywhere (cannot be trained through).
    pub fn is_untrainable(self) -> bool {
        self == Activation::Step
    }

    /// Whether the function acts on a whole row (softmax family) rather than element-wise.
    pub fn is_row_wise(self) -> bool {
        matches!(self, Activation::Softmax { .. } | Activation::LogSoftmax)
    }

    /// `f(z)` of one element (element-wise activations only).
    #[inline]
    fn value(self, z: f32) -> f32 {
        match self {
            Activation::Linear => z,
            Activation::Step => (z > 0.0) as u8 as f32,
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu { negative_slope } => {
                if z > 0.0 {
                    z
                } else {
                    negative_slope * z
                }
            }
            Activation::Sigmoid => sigmoid(z),
            Activation::Tanh => z.tanh(),
            Activation::Gelu { approximate: false } => {
                0.5 * z * (1.0 + libm::erff(z * std::f32::consts::FRAC_1_SQRT_2))
            }
            Activation::Gelu { approximate: true } => {
                0.5 * z * (1.0 + (SQRT_2_OVER_PI * (z + GELU_CUBIC * z * z * z)).tanh())
            }
            Activation::Swish => z * sigmoid(z),
            Activation::Elu { alpha } => {
                if z > 0.0 {
                    z
                } else {
                    alpha * z.exp_m1()
                }
            }
            Activation::Selu => SELU_SCALE * if z > 0.0 { z } else { SELU_ALPHA * z.exp_m1() },
            Activation::Softplus => softplus(z),
            Activation::Softsign => z / (1.0 + z.abs()),
            Activation::HardSigmoid => (z / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Mish => z * softplus(z).tanh(),
            Activation::Softmax { .. } | Activation::LogSoftmax => unreachable!("row-wise"),
        }
    }

    /// `f'(z)` of one element, from the output `a` and (when [`Self::needs_input`]) the input `z`.
    #[inline]
    fn derivative(self, z: f32, a: f32) -> f32 {
        match self {
            Activation::Linear => 1.0,
            Activation::Step => 0.0,
            Activation::Relu => (a > 0.0) as u8 as f32,
            Activation::LeakyRelu { negative_slope } => {
                if z > 0.0 {
                    1.0
                } else {
                    negative_slope
                }
            }
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Tanh => 1.0 - a * a,
            Activation::Gelu { approximate: false } => {
                0.5 * (1.0 + libm::erff(z * std::f32::consts::FRAC_1_SQRT_2)) + z * phi(z)
            }
            Activation::Gelu { approximate: true } => {
                let u = SQRT_2_OVER_PI * (z + GELU_CUBIC * z * z * z);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * z * z);
                0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
            }
            Activation::Swish => {
                let s = sigmoid(z);
                s + z * s * (1.0 - s)
            }
            Activation::Elu { alpha } => {
                if a > 0.0 {
                    1.0
                } else {
                    a + alpha
                }
            }
            Activation::Selu => {
                if a > 0.0 {
                    SELU_SCALE
                } else {
                    a + SELU_SCALE * SELU_ALPHA
                }
            }
            // sigmoid(z) = 1 - e^{-softplus(z)}
            Activation::Softplus => -(-a).exp_m1(),
            Activation::Softsign => (1.0 - a.abs()) * (1.0 - a.abs()),
            Activation::HardSigmoid => {
                if a > 0.0 && a < 1.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
            Activation::Mish => {
                let t = softplus(z).tanh();
                t + z * (1.0 - t * t) * sigmoid(z)
            }
            Activation::Softmax { .. } | Activation::LogSoftmax => unreachable!("row-wise"),
        }
    }

    /// `row <- f(row)` for one sample.
    #[inline]
    pub fn forward_row(self, row: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Softmax { temperature } => {
                if temperature != 1.0 {
                    let inv = 1.0 / temperature;
                    row.iter_mut().for_each(|v| *v *= inv);
                }
                softmax_row(row)
            }
            Activation::LogSoftmax => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
                row.iter_mut().for_each(|v| *v -= lse);
            }
            // The most common activation gets its own loop: with the match outside it, it
            // vectorizes (the same `max` as `value`, so the same bits).
            Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            act => row.iter_mut().for_each(|v| *v = act.value(*v)),
        }
    }

    /// `grad <- dL/dz` given `grad = dL/da`, the output `a` and (possibly empty) input `z` of one
    /// sample; `z` must be given when [`Self::needs_input`].
    #[inline]
    pub fn backward_row(self, z: &[f32], out: &[f32], grad: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Softmax { temperature } => {
                let dot: f32 = grad.iter().zip(out).map(|(g, a)| g * a).sum();
                let inv = 1.0 / temperature;
                grad.iter_mut().zip(out).for_each(|(g, &a)| *g = a * (*g - dot) * inv);
            }
            Activation::LogSoftmax => {
                let sum: f32 = grad.iter().sum();
                grad.iter_mut().zip(out).for_each(|(g, &a)| *g -= a.exp() * sum);
            }
            // A select rather than a branch, so the loop vectorises.
            Activation::Relu => grad.iter_mut().zip(out).for_each(|(g, &a)| *g = if a > 0.0 { *g } else { 0.0 }),
            act if act.needs_input() => {
                for ((g, &zi), &a) in grad.iter_mut().zip(z).zip(out) {
                    *g *= act.derivative(zi, a);
                }
            }
            act => grad.iter_mut().zip(out).for_each(|(g, &a)| *g *= act.derivative(0.0, a)),
        }
    }

    /// Forward over a `rows x cols` buffer in place. Element-wise functions ignore the row
    /// structure and sweep the buffer in large chunks (vectorised, split across threads when big).
    pub fn forward(self, data: &mut [f32], cols: usize) {
        match self {
            Activation::Linear => {}
            act if act.is_row_wise() => for_each_row(data, cols, |_, r| act.forward_row(r)),
            act => for_each_chunk(data, |c| act.forward_row(c)),
        }
    }

    /// `output = act(input)` over a `rows x cols` buffer in one pass (the same values as a copy
    /// followed by [`Self::forward`]).
    pub fn forward_into(self, input: &[f32], output: &mut [f32], cols: usize) {
        let n = output.len();
        if self.is_row_wise() || self == Activation::Linear {
            output.copy_from_slice(&input[..n]);
            return self.forward(output, cols);
        }
        for_each_chunk_at(output, |start, out| {
            let x = &input[start..start + out.len()];
            match self {
                Activation::Relu => out.iter_mut().zip(x).for_each(|(o, &x)| *o = x.max(0.0)),
                act => out.iter_mut().zip(x).for_each(|(o, &x)| *o = act.value(x)),
            }
        });
    }

    /// Backward over a `rows x cols` buffer; `z` is empty unless [`Self::needs_input`].
    pub fn backward(self, z: &[f32], out: &[f32], grad: &mut [f32], cols: usize) {
        match self {
            Activation::Linear => {}
            act if act.is_row_wise() => {
                for_each_row(grad, cols, |i, g| act.backward_row(&[], &out[i * cols..(i + 1) * cols], g))
            }
            act => {
                let with_z = act.needs_input();
                for_each_chunk_at(grad, |start, g| {
                    let zc = if with_z { &z[start..start + g.len()] } else { &[][..] };
                    act.backward_row(zc, &out[start..start + g.len()], g)
                })
            }
        }
    }
}

/// Elements per chunk of an element-wise sweep.
const CHUNK: usize = 1 << 14;

/// Runs `f` on consecutive chunks of `data`, in parallel when the buffer is large.
fn for_each_chunk(data: &mut [f32], f: impl Fn(&mut [f32]) + Sync) {
    for_each_chunk_at(data, |_, c| f(c))
}

/// Runs `f(start, chunk)` on consecutive chunks of `data`, in parallel when the buffer is large.
fn for_each_chunk_at(data: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let run = |(i, c): (usize, &mut [f32])| f(i * CHUNK, c);
    if data.len() >= PARALLEL_MIN_ELEMS && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(CHUNK).enumerate().for_each(run);
    } else {
        data.chunks_mut(CHUNK).enumerate().for_each(run);
    }
}

#[cfg(test)]
pub(crate) const ALL_FOR_TESTS: [Activation; 19] = [
    Activation::Linear,
    Activation::Step,
    Activation::Relu,
    Activation::LeakyRelu { negative_slope: 0.01 },
    Activation::LeakyRelu { negative_slope: 0.3 },
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Gelu { approximate: false },
    Activation::Gelu { approximate: true },
    Activation::Swish,
    Activation::Softmax { temperature: 1.0 },
    Activation::Softmax { temperature: 0.5 },
    Activation::Elu { alpha: 1.0 },
    Activation::Selu,
    Activation::Softplus,
    Activation::Softsign,
    Activation::HardSigmoid,
    Activation::Mish,
    Activation::LogSoftmax,
];

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 19] = ALL_FOR_TESTS;

    /// Central differences in f64 of `L = sum_i w_i f(z)_i` against `backward`, at points that
    /// include large magnitudes; kinks (0 for ReLU-like, +-3 for hard sigmoid) are checked by
    /// one-sided derivatives in `derivatives_at_kinks_take_a_side`.
    #[test]
    fn backward_matches_central_differences() {
        let z0: Vec<f32> = vec![-30.0, -2.5, -1.7, -0.4, 0.3, 0.9, 2.2, 25.0];
        let w: Vec<f32> = vec![0.3, -1.1, 0.7, 0.2, -0.5, 0.9, 0.4, -0.8];
        for act in ALL {
            let loss = |z: &[f64]| -> f64 {
                let mut a: Vec<f32> = z.iter().map(|&v| v as f32).collect();
                act.forward_row(&mut a);
                a.iter().zip(&w).map(|(&a, &w)| a as f64 * w as f64).sum()
            };
            let mut a = z0.clone();
            act.forward_row(&mut a);
            let mut g = w.clone();
            act.backward_row(&z0, &a, &mut g);
            let zd: Vec<f64> = z0.iter().map(|&v| v as f64).collect();
            for i in 0..z0.len() {
                let h = 1e-2;
                let (mut p, mut m) = (zd.clone(), zd.clone());
                p[i] += h;
                m[i] -= h;
                let num = (loss(&p) - loss(&m)) / (2.0 * h);
                let err = (num - g[i] as f64).abs();
                assert!(
                    err < 2e-3 * (1.0 + num.abs()),
                    "{act:?} dz[{i}] at {}: numeric {num} analytic {}",
                    z0[i],
                    g[i]
                );
            }
        }
    }

    #[test]
    fn one_pass_forward_gives_the_bits_of_copy_then_forward() {
        // Long enough for the parallel chunks, with the kinks and signed zeros in it.
        let x: Vec<f32> =
            (0..(1 << 17)).map(|i| ((i % 97) as f32 - 48.0) * 0.125 * if i % 5 == 0 { -0.0 } else { 1.0 }).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for act in ALL_FOR_TESTS {
            let mut want = x.clone();
            act.forward(&mut want, 8);
            let mut got = vec![0.0; x.len()];
            pool.install(|| act.forward_into(&x, &mut got, 8));
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{act:?}");
        }
    }

    #[test]
    fn derivatives_at_kinks_take_a_side() {
        let check = |act: Activation, z: f32, want: f32| {
            let mut a = [z];
            act.forward_row(&mut a);
            let mut g = [1.0];
            act.backward_row(&[z], &a, &mut g);
            assert_eq!(g[0], want, "{act:?} at {z}");
        };
        check(Activation::Relu, 0.0, 0.0);
        check(Activation::LeakyRelu { negative_slope: 0.01 }, 0.0, 0.01);
        check(Activation::Step, 0.0, 0.0);
        check(Activation::HardSigmoid, 3.0, 0.0);
        check(Activation::HardSigmoid, -3.0, 0.0);
        check(Activation::Elu { alpha: 1.0 }, 0.0, 1.0);
    }

    #[test]
    fn extreme_inputs_stay_finite_forward_and_backward() {
        for act in ALL {
            let z = vec![-1e4, -88.0, 0.0, 88.0, 1e4];
            let mut a = z.clone();
            act.forward_row(&mut a);
            assert!(a.iter().all(|v| v.is_finite()), "{act:?}: {a:?}");
            let mut g = vec![1.0; 5];
            act.backward_row(&z, &a, &mut g);
            assert!(g.iter().all(|v| v.is_finite()), "{act:?} backward: {g:?}");
        }
        let mut r = vec![1e4, 0.0];
        softmax_row(&mut r);
        assert_eq!(r, vec![1.0, 0.0]);
    }
}
