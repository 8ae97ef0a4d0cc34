//! Optimizers: one fused sweep over the flat parameter and gradient buffers per step, split across
//! threads in fixed-size chunks when the model is large enough for that to pay.
//!
//! Update rules follow Keras 3 (note 001 and note 002 §4.4 give the same methods).

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// The description of an optimizer, as Python sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Sgd {
        #[serde(default = "sgd_lr")]
        learning_rate: f32,
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
    },
    Adam {
        #[serde(default = "adam_lr")]
        learning_rate: f32,
        #[serde(default = "beta_1")]
        beta_1: f32,
        #[serde(default = "beta_2")]
        beta_2: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
}

fn sgd_lr() -> f32 {
    0.01
}
fn adam_lr() -> f32 {
    0.001
}
fn beta_1() -> f32 {
    0.9
}
fn beta_2() -> f32 {
    0.999
}
fn epsilon() -> f32 {
    1e-7
}

/// A live optimizer with its state (moments, step count).
#[derive(Clone, Debug)]
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
}

impl Optimizer {
    /// Allocates the state for `n_params` parameters once; steps never allocate.
    pub fn new(spec: &OptimizerSpec, n_params: usize) -> Result<Self> {
        let check = |what: &str, v: f32, ok: bool| {
            if v.is_finite() && ok {
                Ok(())
            } else {
                Err(invalid(format!("optimizer {what} out of range: {v}")))
            }
        };
        Ok(match *spec {
            OptimizerSpec::Sgd { learning_rate, momentum, nesterov } => {
                check("learning_rate", learning_rate, learning_rate >= 0.0)?;
                check("momentum", momentum, (0.0..=1.0).contains(&momentum))?;
                Optimizer::Sgd(Sgd::new(learning_rate, momentum, nesterov, n_params))
            }
            OptimizerSpec::Adam { learning_rate, beta_1, beta_2, epsilon } => {
                check("learning_rate", learning_rate, learning_rate >= 0.0)?;
                check("beta_1", beta_1, (0.0..1.0).contains(&beta_1))?;
                check("beta_2", beta_2, (0.0..1.0).contains(&beta_2))?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                Optimizer::Adam(Adam::new(learning_rate, beta_1, beta_2, epsilon, n_params))
            }
        })
    }

    /// Applies one update to `params` from `grads`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        match self {
            Optimizer::Sgd(o) => o.step(params, grads),
            Optimizer::Adam(o) => o.step(params, grads),
        }
    }

    /// Number of steps taken (Keras' `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        match self {
            Optimizer::Sgd(o) => o.iterations,
            Optimizer::Adam(o) => o.iterations,
        }
    }

    pub fn learning_rate(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.learning_rate,
            Optimizer::Adam(o) => o.learning_rate,
        }
    }

    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid(format!("learning_rate must be a finite non-negative number; got {lr}")));
        }
        match self {
            Optimizer::Sgd(o) => o.learning_rate = lr,
            Optimizer::Adam(o) => o.learning_rate = lr,
        }
        Ok(())
    }
}

/// Elements per chunk of a parallel sweep: large enough to amortise scheduling, small enough to
/// balance two or more threads on a model of a few hundred thousand parameters.
const SWEEP_CHUNK: usize = 1 << 14;

fn parallel(len: usize) -> bool {
    len >= 2 * SWEEP_CHUNK && rayon::current_num_threads() > 1
}

/// `f(w, g)` over matching chunks of parameters and gradients.
pub(crate) fn sweep(w: &mut [f32], g: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    if parallel(w.len()) {
        w.par_chunks_mut(SWEEP_CHUNK).zip(g.par_chunks(SWEEP_CHUNK)).for_each(|(w, g)| f(w, g));
    } else {
        f(w, g)
    }
}

/// `f(w, g, s)` over matching chunks of parameters, gradients and one state buffer.
pub(crate) fn sweep1(w: &mut [f32], g: &[f32], s: &mut [f32], f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync) {
    if parallel(w.len()) {
        w.par_chunks_mut(SWEEP_CHUNK)
            .zip(g.par_chunks(SWEEP_CHUNK))
            .zip(s.par_chunks_mut(SWEEP_CHUNK))
            .for_each(|((w, g), s)| f(w, g, s));
    } else {
        f(w, g, s)
    }
}

/// `f(w, g, s1, s2)` over matching chunks of parameters, gradients and two state buffers.
pub(crate) fn sweep2(
    w: &mut [f32],
    g: &[f32],
    s1: &mut [f32],
    s2: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    if parallel(w.len()) {
        w.par_chunks_mut(SWEEP_CHUNK)
            .zip(g.par_chunks(SWEEP_CHUNK))
            .zip(s1.par_chunks_mut(SWEEP_CHUNK))
            .zip(s2.par_chunks_mut(SWEEP_CHUNK))
            .for_each(|(((w, g), a), b)| f(w, g, a, b));
    } else {
        f(w, g, s1, s2)
    }
}
