//! How a compiled model trains. Two kinds of method, one contract (`step` on the data a step
//! sees, the learning-rate and step-count bookkeeping callbacks read and set):
//!
//! - **minibatch** first-order rules (SGD, Adam, ...): a step is one batch, its gradient and one
//!   `Optimizer::step`;
//! - **full-batch L-BFGS** (note 001): a step is the whole data set and one call of the
//!   line-search method, which evaluates the objective and its gradient as often as it needs.

use crate::error::{invalid, Result};
use crate::graph::GraphWorkspace;
use crate::network::Network;
use crate::optim::{Lbfgs, LearningRate, Optimizer, OptimizerSpec, Rule};

use super::data::{first_non_finite, Dataset};
use super::heads::{Compiled, Head, Running};
use super::monitor::GradMonitor;
use super::step::{forward_backward, heads_loss};

/// Full-batch L-BFGS with the bookkeeping every trainer has.
#[derive(Clone, Debug)]
pub struct FullBatchLbfgs {
    pub lbfgs: Lbfgs,
    /// The initial step of each line search.
    pub learning_rate: LearningRate,
    pub iterations: u64,
    pub last_learning_rate: f64,
    /// Work copies of the weights and gradient, allocated once.
    w: Vec<f32>,
    g: Vec<f32>,
}

/// The training method a model was compiled with.
#[derive(Clone, Debug)]
pub enum Trainer {
    Minibatch(Optimizer),
    FullBatch(Box<FullBatchLbfgs>),
}

impl Trainer {
    /// The trainer for `spec` over `n` parameters (state allocated once).
    pub fn new(spec: &OptimizerSpec, n: usize) -> Result<Self> {
        let Rule::Lbfgs { max_iter, history_size, tolerance_grad, tolerance_change } = spec.rule else {
            return Optimizer::new(spec, n).map(Trainer::Minibatch);
        };
        spec.learning_rate.validate()?;
        if max_iter == 0 || history_size == 0 {
            return Err(invalid("LBFGS: max_iter and history_size must be positive"));
        }
        Ok(Trainer::FullBatch(Box::new(FullBatchLbfgs {
            lbfgs: Lbfgs::new(max_iter, history_size, tolerance_grad, tolerance_change, n)?,
            learning_rate: spec.learning_rate.clone(),
            iterations: 0,
            last_learning_rate: spec.learning_rate.at(0, 1),
            w: crate::alloc::filled(n, 0.0, "the L-BFGS weights")?,
            g: crate::alloc::filled(n, 0.0, "the L-BFGS gradient")?,
        })))
    }

    /// Samples per step for a requested batch size over `rows` samples.
    pub fn batch_size(&self, requested: usize, rows: usize) -> usize {
        match self {
            Trainer::Minibatch(_) => requested.min(rows.max(1)),
            Trainer::FullBatch(_) => rows.max(1),
        }
    }

    /// The first-order optimizer, when this is one.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        match self {
            Trainer::Minibatch(o) => Some(o),
            Trainer::FullBatch(_) => None,
        }
    }

    /// The rate the next step will use.
    pub fn current_learning_rate(&self) -> f64 {
        match self {
            Trainer::Minibatch(o) => o.current_learning_rate(),
            Trainer::FullBatch(f) => f.learning_rate.at(f.iterations, 1),
        }
    }

    /// Replaces the rate (and any schedule) by a constant, as a callback setting `lr` does.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match self {
            Trainer::Minibatch(o) => o.set_learning_rate(lr),
            Trainer::FullBatch(f) => {
                let lr = LearningRate::Constant(lr);
                lr.validate()?;
                f.learning_rate = lr;
                Ok(())
            }
        }
    }

    pub fn last_learning_rate(&self) -> f64 {
        match self {
            Trainer::Minibatch(o) => o.last_learning_rate,
            Trainer::FullBatch(f) => f.last_learning_rate,
        }
    }

    /// Steps taken since `compile` (Keras' `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        match self {
            Trainer::Minibatch(o) => o.iterations,
            Trainer::FullBatch(f) => f.iterations,
        }
    }

    /// Steps per epoch of the current `fit`, for epoch-based schedules.
    pub fn set_steps_per_epoch(&mut self, steps: u64) {
        if let Trainer::Minibatch(o) = self {
            o.steps_per_epoch = steps.max(1);
        }
    }

    /// The state buffers, for saving (L-BFGS keeps none that outlive a fit: its curvature pairs
    /// start afresh).
    pub fn slots(&self) -> Vec<(&'static str, &[f32])> {
        self.optimizer().map(Optimizer::slots).unwrap_or_default()
    }

    /// Restores the state saved from `slots()` and `iterations()`.
    pub fn restore(&mut self, iterations: u64, slots: &[(String, Vec<f32>)]) -> Result<()> {
        match self {
            Trainer::Minibatch(o) => o.restore(iterations, slots),
            Trainer::FullBatch(_) if !slots.is_empty() => {
                Err(invalid("optimizer state does not match this optimizer: L-BFGS keeps no slots"))
            }
            Trainer::FullBatch(f) => {
                f.iterations = iterations;
                Ok(())
            }
        }
    }
}

/// One training step on `b`: the trainer's update, the loss and metrics into `running`.
///
/// With a `guard` buffer (TerminateOnNaN), a batch whose loss is not finite is not applied, and
/// an update that makes any weight non-finite is undone from the copy taken before it: the model
/// keeps its last finite weights and `false` is returned.
pub fn train_step(
    net: &mut Network,
    ws: &mut GraphWorkspace,
    c: &mut Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
    guard: Option<&mut Vec<f32>>,
    monitor: Option<&mut GradMonitor>,
) -> bool {
    let Compiled { trainer, heads, fused_nodes, .. } = c;
    let optimizer = match trainer {
        Trainer::Minibatch(o) => o,
        Trainer::FullBatch(f) => {
            f.step(net, ws, heads, fused_nodes, b, running);
            return true;
        }
    };
    let loss = forward_backward(net, ws, heads, fused_nodes, b, running);
    let p = &mut net.params;
    if let Some(m) = monitor {
        // Raw gradients, before any clipping the optimizer applies.
        m.record(p);
    }
    match guard {
        None => {
            optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            true
        }
        Some(backup) => {
            if !loss.is_finite() {
                return false;
            }
            backup.clear();
            backup.extend_from_slice(&p.values);
            optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            if first_non_finite(&p.values).is_some() {
                p.values.copy_from_slice(backup);
                return false;
            }
            true
        }
    }
}

impl FullBatchLbfgs {
    /// One L-BFGS call (up to `max_iter` iterations with line search) on all of `data`, then
    /// the loss and metrics at the final weights into `running`.
    fn step(
        &mut self,
        net: &mut Network,
        ws: &mut GraphWorkspace,
        heads: &[Head],
        fused_nodes: &[bool],
        data: &Dataset<'_>,
        running: &mut Running,
    ) {
        let lr = self.learning_rate.at(self.iterations, 1);
        let Self { lbfgs, w, g, .. } = self;
        w.copy_from_slice(&net.params.values);
        lbfgs.run(lr, w, g, |w, g| {
            net.params.values.copy_from_slice(w);
            // The same dropout masks at every point of the line search.
            net.reset_noise();
            let loss = forward_backward(net, ws, heads, fused_nodes, data, &mut Running::new(heads));
            g.copy_from_slice(&net.params.grads);
            loss
        });
        net.params.values.copy_from_slice(w);
        self.iterations += 1;
        self.last_learning_rate = lr;
        // Loss and metrics at the final weights.
        net.infer(ws, &data.x, data.rows);
        heads_loss(&net.graph, ws, heads, data, running, false);
        running.end_batch(data.rows, net.params.penalty());
    }
}
