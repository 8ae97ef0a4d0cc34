//! Optimizers. One step: learning rate from the schedule, gradient clipping, decoupled weight
//! decay on kernels, then the update rule in one sweep over the flat parameter, gradient and
//! state buffers, split across threads in fixed-size chunks when the model is large enough.
//!
//! Freezing (Keras `layer.trainable = False`): a tensor whose `trainable` flag is false is skipped
//! entirely. The step runs the rule over each maximal contiguous run of the buffer that holds no
//! frozen tensor (a [`Segments`] iterator, computed from the tensor list at every step without
//! allocating), so frozen values and their entries in every state buffer (momentum, `m`, `v`, ...)
//! stay bit-identical; they take no weight decay, and clipping neither changes their gradients
//! nor counts them in any norm. With nothing frozen there is one segment, the whole buffer, and
//! the sweep is exactly the unfrozen one. `Role::NonTrainable` tensors (moving statistics) are not
//! frozen: they stay in the segments, where their zero gradient leaves them unchanged. L-BFGS
//! runs over the whole vector; the model zeroes frozen gradients after backward
//! (`ParamStore::zero_frozen_grads`), which keeps its direction zero there.
//!
//! Common options (Keras 3 semantics, note 004 "gradient clipping", note 002 "weight decay"):
//! - `clipvalue`: each gradient component clipped to `[-c, c]`
//! - `clipnorm`: each tensor's gradient rescaled to L2 norm at most `c`
//! - `global_clipnorm`: all gradients rescaled together to global norm at most `c`
//! - `weight_decay`: `w <- w - lr * wd * w` before the update, on kernels only (note 002: "W_t es
//!   theta_t cambiando los biases por 0"); decoupled from the gradient, as in AdamW.

mod adagrad;
mod adam;
mod adamax;
mod lbfgs;
mod nadam;
mod rmsprop;
pub mod schedule;
mod sgd;

pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use lbfgs::Lbfgs;
pub use nadam::Nadam;
pub use rmsprop::RmsProp;
pub use schedule::{LearningRate, Schedule};
pub use sgd::Sgd;

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::params::{Role, Tensor};

/// The update rule and its hyper-parameters, as Python sends them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Rule {
    Sgd {
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
    },
    Adam {
        #[serde(default = "beta_1")]
        beta_1: f32,
        #[serde(default = "beta_2")]
        beta_2: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
        #[serde(default)]
        amsgrad: bool,
    },
    Adagrad {
        #[serde(default = "accumulator")]
        initial_accumulator_value: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    Rmsprop {
        #[serde(default = "rho")]
        rho: f32,
        #[serde(default)]
        momentum: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
        #[serde(default)]
        centered: bool,
    },
    Adamax {
        #[serde(default = "beta_1")]
        beta_1: f32,
        #[serde(default = "beta_2")]
        beta_2: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    Nadam {
        #[serde(default = "beta_1")]
        beta_1: f32,
        #[serde(default = "beta_2")]
        beta_2: f32,
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    Lbfgs {
        #[serde(default = "max_iter")]
        max_iter: usize,
        #[serde(default = "history_size")]
        history_size: usize,
        #[serde(default = "tolerance_grad")]
        tolerance_grad: f64,
        #[serde(default = "tolerance_change")]
        tolerance_change: f64,
    },
}

fn max_iter() -> usize {
    20
}
fn history_size() -> usize {
    10
}
fn tolerance_grad() -> f64 {
    1e-7
}
fn tolerance_change() -> f64 {
    1e-9
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
fn accumulator() -> f32 {
    0.1
}
fn rho() -> f32 {
    0.9
}
fn default_lr() -> LearningRate {
    LearningRate::Constant(0.001)
}

/// A whole optimizer description: rule, learning rate (or schedule) and common options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    #[serde(flatten)]
    pub rule: Rule,
    #[serde(default = "default_lr")]
    pub learning_rate: LearningRate,
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default)]
    pub clipnorm: Option<f32>,
    #[serde(default)]
    pub clipvalue: Option<f32>,
    #[serde(default)]
    pub global_clipnorm: Option<f32>,
}

impl OptimizerSpec {
    /// A rule at a constant rate with no decay or clipping.
    pub fn new(rule: Rule, learning_rate: f64) -> Self {
        Self {
            rule,
            learning_rate: LearningRate::Constant(learning_rate),
            weight_decay: 0.0,
            clipnorm: None,
            clipvalue: None,
            global_clipnorm: None,
        }
    }
}

/// A zeroed slot buffer of `n` values, asked for fallibly.
fn slots(n: usize) -> Result<Vec<f32>> {
    crate::alloc::filled(n, 0.0, "the optimizer's slots")
}

/// The state of an update rule.
#[derive(Clone, Debug)]
pub enum State {
    Sgd(Sgd),
    Adam(Adam),
    Adagrad(Adagrad),
    RmsProp(RmsProp),
    Adamax(Adamax),
    Nadam(Nadam),
}

/// A live optimizer: rule state, schedule, options and step count.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub state: State,
    pub learning_rate: LearningRate,
    pub weight_decay: f32,
    pub clipnorm: Option<f32>,
    pub clipvalue: Option<f32>,
    pub global_clipnorm: Option<f32>,
    /// Updates taken (Keras' `iterations`).
    pub iterations: u64,
    /// Rate used by the latest update.
    pub last_learning_rate: f64,
    /// Steps per epoch of the current `fit`, for epoch-based warm-up.
    pub steps_per_epoch: u64,
}

fn check(what: &str, v: f32, ok: bool) -> Result<()> {
    if v.is_finite() && ok {
        Ok(())
    } else {
        Err(invalid(format!("optimizer {what} out of range: {v}")))
    }
}

impl Optimizer {
    /// Allocates the state for `n` parameters once; steps never allocate.
    pub fn new(spec: &OptimizerSpec, n: usize) -> Result<Self> {
        spec.learning_rate.validate()?;
        check("weight_decay", spec.weight_decay, spec.weight_decay >= 0.0)?;
        let clips = [spec.clipnorm, spec.clipvalue, spec.global_clipnorm];
        for (what, c) in ["clipnorm", "clipvalue", "global_clipnorm"].iter().zip(clips) {
            if let Some(c) = c {
                check(what, c, c > 0.0)?;
            }
        }
        if clips.iter().filter(|c| c.is_some()).count() > 1 {
            return Err(invalid("only one of clipnorm, clipvalue and global_clipnorm may be set"));
        }
        let unit = |what: &str, v: f32| check(what, v, (0.0..1.0).contains(&v));
        let state = match spec.rule {
            Rule::Sgd { momentum, nesterov } => {
                check("momentum", momentum, (0.0..=1.0).contains(&momentum))?;
                State::Sgd(Sgd::new(momentum, nesterov, n)?)
            }
            Rule::Adam { beta_1, beta_2, epsilon, amsgrad } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                State::Adam(Adam::new(beta_1, beta_2, epsilon, amsgrad, n)?)
            }
            Rule::Adagrad { initial_accumulator_value, epsilon } => {
                check("initial_accumulator_value", initial_accumulator_value, initial_accumulator_value >= 0.0)?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                State::Adagrad(Adagrad::new(initial_accumulator_value, epsilon, n)?)
            }
            Rule::Rmsprop { rho, momentum, epsilon, centered } => {
                unit("rho", rho)?;
                check("momentum", momentum, (0.0..1.0).contains(&momentum))?;
                check("epsilon", epsilon, epsilon >= 0.0)?;
                State::RmsProp(RmsProp::new(rho, momentum, epsilon, centered, n)?)
            }
            Rule::Adamax { beta_1, beta_2, epsilon } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                State::Adamax(Adamax::new(beta_1, beta_2, epsilon, n)?)
            }
            Rule::Nadam { beta_1, beta_2, epsilon } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                State::Nadam(Nadam::new(beta_1, beta_2, epsilon, n)?)
            }
            Rule::Lbfgs { .. } => {
                return Err(invalid("LBFGS is a full-batch method: it trains through model::Trainer, not per batch"))
            }
        };
        Ok(Self {
            state,
            learning_rate: spec.learning_rate.clone(),
            weight_decay: spec.weight_decay,
            clipnorm: spec.clipnorm,
            clipvalue: spec.clipvalue,
            global_clipnorm: spec.global_clipnorm,
            iterations: 0,
            last_learning_rate: spec.learning_rate.at(0, 1),
            steps_per_epoch: 1,
        })
    }

    /// The rate the next update will use.
    pub fn current_learning_rate(&self) -> f64 {
        self.learning_rate.at(self.iterations, self.steps_per_epoch)
    }

    /// Replaces the rate (and any schedule) by a constant, as a callback setting `lr` does.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        let lr = LearningRate::Constant(lr);
        lr.validate()?;
        self.learning_rate = lr;
        Ok(())
    }

    /// One update of `params` from `grads` (which clipping may rescale in place), skipping frozen
    /// tensors (`trainable == false`) entirely. `tensors` lie in offset order; positions of the
    /// buffers no tensor describes are treated as trainable.
    pub fn step(&mut self, params: &mut [f32], grads: &mut [f32], tensors: &[Tensor]) {
        let lr = self.current_learning_rate();
        let segments = Segments::new(tensors, params.len());
        self.clip(grads, tensors, segments.clone());
        if self.weight_decay > 0.0 {
            let keep = (1.0 - lr * self.weight_decay as f64) as f32;
            for t in tensors.iter().filter(|t| t.role == Role::Kernel && t.trainable) {
                params[t.range()].iter_mut().for_each(|w| *w *= keep);
            }
        }
        self.iterations += 1;
        let update = Update { w: params, g: grads, lr, t: self.iterations, segments };
        match &mut self.state {
            State::Sgd(o) => o.step(update),
            State::Adam(o) => o.step(update),
            State::Adagrad(o) => o.step(update),
            State::RmsProp(o) => o.step(update),
            State::Adamax(o) => o.step(update),
            State::Nadam(o) => o.step(update),
        }
        self.last_learning_rate = lr;
    }

    /// Clips the gradients of trainable tensors only; frozen ones are neither changed nor counted.
    fn clip(&self, grads: &mut [f32], tensors: &[Tensor], segments: Segments<'_>) {
        if let Some(c) = self.clipvalue {
            for r in segments.clone() {
                sweep(&mut grads[r], &[], |g, _| g.iter_mut().for_each(|g| *g = g.clamp(-c, c)));
            }
        }
        if let Some(c) = self.clipnorm {
            for t in tensors.iter().filter(|t| t.trainable) {
                scale_to_norm(&mut grads[t.range()], c);
            }
        }
        if let Some(c) = self.global_clipnorm {
            // One sequential sum in buffer order: with a single segment, exactly `scale_to_norm`.
            let norm = segments.clone().flat_map(|r| &grads[r]).map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
            if norm > c as f64 {
                let s = (c as f64 / norm) as f32;
                segments.for_each(|r| grads[r].iter_mut().for_each(|v| *v *= s));
            }
        }
    }

    /// Restores the state saved from `slots()` and `iterations` (to resume training exactly).
    pub fn restore(&mut self, iterations: u64, slots: &[(String, Vec<f32>)]) -> Result<()> {
        let expected: Vec<(&'static str, usize)> = self.slots().iter().map(|(n, v)| (*n, v.len())).collect();
        let given: Vec<(&str, usize)> = slots.iter().map(|(n, v)| (n.as_str(), v.len())).collect();
        if expected != given {
            return Err(invalid(format!(
                "optimizer state does not match this optimizer: expected slots {expected:?}, got {given:?}"
            )));
        }
        let targets: Vec<&mut Vec<f32>> = match &mut self.state {
            State::Sgd(o) => vec![&mut o.velocity],
            State::Adam(o) => vec![&mut o.m, &mut o.v, &mut o.v_hat],
            State::Adagrad(o) => vec![&mut o.accumulator],
            State::RmsProp(o) => vec![&mut o.velocity, &mut o.average, &mut o.momentum_buf],
            State::Adamax(o) => vec![&mut o.m, &mut o.u],
            State::Nadam(o) => vec![&mut o.m, &mut o.v],
        };
        let mut given = slots.iter();
        for t in targets.into_iter().filter(|t| !t.is_empty()) {
            t.copy_from_slice(&given.next().expect("counted above").1);
        }
        if let State::Nadam(o) = &mut self.state {
            // The momentum-schedule product is a function of the step count alone.
            let b1 = o.beta_1 as f64;
            o.u_product = (1..=iterations).map(|t| b1 * (1.0 - 0.5 * 0.96f64.powf(0.004 * t as f64))).product();
        }
        self.iterations = iterations;
        Ok(())
    }

    /// The state buffers, for inspection (`optimizer.variables`) and saving.
    pub fn slots(&self) -> Vec<(&'static str, &[f32])> {
        match &self.state {
            State::Sgd(o) => vec![("momentum", &o.velocity[..])],
            State::Adam(o) => vec![("m", &o.m[..]), ("v", &o.v[..]), ("v_hat", &o.v_hat[..])],
            State::Adagrad(o) => vec![("accumulator", &o.accumulator[..])],
            State::RmsProp(o) => vec![
                ("velocity", &o.velocity[..]),
                ("average_gradient", &o.average[..]),
                ("momentum", &o.momentum_buf[..]),
            ],
            State::Adamax(o) => vec![("m", &o.m[..]), ("u", &o.u[..])],
            State::Nadam(o) => vec![("m", &o.m[..]), ("v", &o.v[..])],
        }
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .collect()
    }
}

/// One update as every rule reads it: the whole parameter and gradient buffers, the rate, the
/// update's 1-based number, and the runs of trainable values to change (frozen tensors lie
/// outside them and keep their values and state).
pub struct Update<'a> {
    pub w: &'a mut [f32],
    pub g: &'a [f32],
    pub lr: f64,
    pub t: u64,
    pub segments: Segments<'a>,
}

impl Update<'_> {
    /// `kernel(w, g, states)` over every trainable run (each split into parallel chunks); the
    /// `states` are whole buffers as long as `w`, sliced alongside it.
    pub fn sweep<const K: usize>(
        self,
        mut states: [&mut [f32]; K],
        kernel: impl Fn(&mut [f32], &[f32], [&mut [f32]; K]) + Sync,
    ) {
        let Update { w, g, segments, .. } = self;
        for r in segments {
            let sliced = states.each_mut().map(|s| &mut s[r.clone()]);
            sweep_with(&mut w[r.clone()], &g[r], sliced, &kernel);
        }
    }
}

/// The maximal runs of `0..len` that hold no frozen tensor (`trainable == false`), in order: the
/// ranges an update sweeps. Tensors must lie in offset order; parts of the buffer no tensor
/// describes count as trainable, so an empty tensor list gives the single run `0..len`.
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    tensors: std::slice::Iter<'a, Tensor>,
    start: usize,
    len: usize,
}

impl<'a> Segments<'a> {
    pub fn new(tensors: &'a [Tensor], len: usize) -> Self {
        Self { tensors: tensors.iter(), start: 0, len }
    }
}

impl Iterator for Segments<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        for t in self.tensors.by_ref() {
            if t.trainable || t.is_empty() {
                continue;
            }
            let (lo, hi) = (t.offset, t.offset + t.len());
            debug_assert!(lo >= self.start && hi <= self.len, "tensors in offset order inside the buffer");
            let run = self.start..lo;
            self.start = self.start.max(hi);
            if !run.is_empty() {
                return Some(run);
            }
        }
        let run = self.start..self.len;
        self.start = self.len;
        (!run.is_empty()).then_some(run)
    }
}

/// Rescales `g` so its L2 norm is at most `c`.
fn scale_to_norm(g: &mut [f32], c: f32) {
    let norm = g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    if norm > c as f64 {
        let s = (c as f64 / norm) as f32;
        g.iter_mut().for_each(|v| *v *= s);
    }
}

/// Elements per chunk of a parallel sweep: large enough to amortise scheduling, small enough to
/// balance two or more threads on a model of a few hundred thousand parameters.
const SWEEP_CHUNK: usize = 1 << 14;

fn parallel(len: usize) -> bool {
    len >= 2 * SWEEP_CHUNK && rayon::current_num_threads() > 1
}

/// Raw pointer to a state buffer that worker threads slice into disjoint chunks.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `f(w, g, states)` over matching chunks of the parameters, gradients and `K` state buffers
/// (each as long as `w`; `g` may be empty when the rule needs none).
pub(crate) fn sweep_with<const K: usize>(
    w: &mut [f32],
    g: &[f32],
    states: [&mut [f32]; K],
    f: impl Fn(&mut [f32], &[f32], [&mut [f32]; K]) + Sync,
) {
    let n = w.len();
    assert!(states.iter().all(|s| s.len() == n), "optimizer state sized for the model");
    let ptrs = states.map(|s| SendPtr(s.as_mut_ptr()));
    let run = |lo: usize, wc: &mut [f32]| {
        let hi = lo + wc.len();
        // SAFETY: chunks [lo, hi) are disjoint across calls and inside every buffer of length n.
        let sc = ptrs.map(|p| unsafe { std::slice::from_raw_parts_mut(p.0.add(lo), hi - lo) });
        let gc = if g.is_empty() { g } else { &g[lo..hi] };
        crate::simd::wide(|| f(wc, gc, sc))
    };
    if parallel(n) {
        w.par_chunks_mut(SWEEP_CHUNK).enumerate().for_each(|(i, wc)| run(i * SWEEP_CHUNK, wc));
    } else {
        run(0, w);
    }
}

#[cfg(test)]
mod tests;

/// `f(w, g)` over matching chunks (no state).
pub(crate) fn sweep(w: &mut [f32], g: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    sweep_with(w, g, [], |w, g, []| f(w, g));
}
