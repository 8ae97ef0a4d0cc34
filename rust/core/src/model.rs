//! The trainable model: a network plus what `compile` chose (loss, optimizer, metrics), and the
//! training loop. An epoch is driven in slices of steps ([`Model::train_steps`]) so the caller
//! can regain control about ten times a second (progress display, Ctrl-C) without ever being
//! entered per batch.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Error, Result};
use crate::loss::Loss;
use crate::metric::{MetricSpec, Tally};
use crate::network::{ModelSpec, Network, Workspace};
use crate::optim::{Optimizer, OptimizerSpec, Sgd, State};
use crate::rng::Stream;
use crate::threads;

/// What `compile` chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileSpec {
    pub loss: Loss,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
}

/// Samples, targets and optional per-sample weights, row-major and borrowed (from numpy
/// arrays, without a copy). Also used for one batch.
#[derive(Clone, Copy, Debug)]
pub struct Dataset<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    /// Per-sample loss weights (Keras' `sample_weight`, with `class_weight` folded in).
    pub weights: Option<&'a [f32]>,
    pub rows: usize,
}

impl<'a> Dataset<'a> {
    /// Unweighted samples.
    pub fn new(x: &'a [f32], y: &'a [f32], rows: usize) -> Self {
        Self { x, y, weights: None, rows }
    }

    /// Rows `lo..hi`, for widths `xw` (inputs) and `tw` (targets) per sample.
    fn slice(&self, lo: usize, hi: usize, xw: usize, tw: usize) -> Dataset<'a> {
        Dataset {
            x: &self.x[lo * xw..hi * xw],
            y: &self.y[lo * tw..hi * tw],
            weights: self.weights.map(|w| &w[lo..hi]),
            rows: hi - lo,
        }
    }
}

/// Named scalar results (`loss` first, then the metrics in the order they were compiled).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs(pub Vec<(String, f64)>);

impl Logs {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

struct Compiled {
    loss: Loss,
    optimizer: Optimizer,
    metrics: Vec<MetricSpec>,
    /// The loss absorbs the last activation (softmax + cross entropy, sigmoid + BCE).
    fused: bool,
}

/// Running sums of one pass over data.
#[derive(Clone, Debug, Default)]
struct Running {
    loss_sum: f64,
    samples: f64,
    tallies: Vec<Tally>,
}

impl Running {
    fn new(metrics: &[MetricSpec]) -> Self {
        Self { loss_sum: 0.0, samples: 0.0, tallies: metrics.iter().map(|m| m.kind.tally()).collect() }
    }

    fn logs(&self, metrics: &[MetricSpec]) -> Logs {
        let mut v = Vec::with_capacity(1 + metrics.len());
        v.push(("loss".to_string(), if self.samples > 0.0 { self.loss_sum / self.samples } else { 0.0 }));
        v.extend(metrics.iter().zip(&self.tallies).map(|(m, t)| (m.name.clone(), m.kind.result(t))));
        Logs(v)
    }

    /// Adds one batch: its mean loss (with the regularization penalty, as Keras reports it) and
    /// its metric counts.
    fn add(&mut self, c: &Compiled, batch_loss_sum: f64, penalty: f64, out: &[f32], b: &Dataset<'_>, ow: usize) {
        self.loss_sum += batch_loss_sum + penalty * b.rows as f64;
        self.samples += b.rows as f64;
        for (m, t) in c.metrics.iter().zip(self.tallies.iter_mut()) {
            m.kind.update(t, out, b.y, b.rows, ow);
        }
    }
}

/// Where the current epoch stands.
#[derive(Debug, Default)]
struct EpochState {
    batch_size: usize,
    shuffle: bool,
    rows: usize,
    step: usize,
    running: Running,
    /// Step at which a non-finite loss stopped the epoch (with `stop_on_nan`).
    nan_at: Option<usize>,
}

/// Reused buffers of a shuffled batch.
#[derive(Debug, Default)]
struct Gather {
    x: Vec<f32>,
    y: Vec<f32>,
    w: Vec<f32>,
}

pub struct Model {
    pub net: Network,
    compiled: Option<Compiled>,
    ws: Workspace,
    shuffle_rng: Stream,
    /// Sample order of the current epoch; reused across epochs.
    order: Vec<usize>,
    gather: Gather,
    epoch: EpochState,
    /// Stop (without applying the update) at the first batch whose loss is NaN or infinite.
    pub stop_on_nan: bool,
    /// Weights before the current step, kept only with `stop_on_nan`.
    backup: Vec<f32>,
    /// Per-layer gradient norms accumulated over the steps of an epoch, when enabled.
    pub grad_monitor: Option<GradMonitor>,
}

/// Running sums of each layer's weight-gradient L2 norm (note 002 appendix A: the size of each
/// layer's gradient shows vanishing and exploding gradients).
#[derive(Clone, Debug, Default)]
pub struct GradMonitor {
    /// Layer name and the tensor indices it owns (tensors named `layer/...`).
    groups: Vec<(String, Vec<usize>)>,
    sums: Vec<f64>,
    steps: usize,
}

impl GradMonitor {
    pub fn new(params: &crate::params::ParamStore) -> Self {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, t) in params.tensors.iter().enumerate() {
            if t.role == crate::params::Role::NonTrainable {
                continue;
            }
            let layer = t.name.split('/').next().unwrap_or(&t.name).to_string();
            match groups.iter_mut().find(|(n, _)| *n == layer) {
                Some((_, v)) => v.push(i),
                None => groups.push((layer, vec![i])),
            }
        }
        let sums = vec![0.0; groups.len()];
        Self { groups, sums, steps: 0 }
    }

    fn record(&mut self, params: &crate::params::ParamStore) {
        for ((_, tensors), sum) in self.groups.iter().zip(self.sums.iter_mut()) {
            let sq: f64 = tensors
                .iter()
                .flat_map(|&i| params.grads[params.tensors[i].range()].iter())
                .map(|&g| (g as f64) * (g as f64))
                .sum();
            *sum += sq.sqrt();
        }
        self.steps += 1;
    }

    /// Mean norm per layer since the last call; resets the sums.
    pub fn take(&mut self) -> Vec<(String, f64)> {
        let n = self.steps.max(1) as f64;
        let out = self.groups.iter().zip(&self.sums).map(|((name, _), s)| (name.clone(), s / n)).collect();
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.steps = 0;
        out
    }
}

/// Purpose tag of the shuffling stream (initializers use the tensor index).
const SHUFFLE_STREAM: u64 = u64::MAX;

impl Model {
    pub fn new(spec: &ModelSpec, seed: u64) -> Result<Self> {
        Ok(Self {
            net: Network::build(spec, seed)?,
            compiled: None,
            ws: Workspace::default(),
            shuffle_rng: Stream::new(seed, SHUFFLE_STREAM),
            order: Vec::new(),
            gather: Gather::default(),
            epoch: EpochState::default(),
            stop_on_nan: false,
            backup: Vec::new(),
            grad_monitor: None,
        })
    }

    /// Chooses loss, optimizer and metrics; the optimizer state starts afresh.
    pub fn compile(&mut self, spec: &CompileSpec) -> Result<()> {
        spec.loss.validate()?;
        let ow = self.net.output_width();
        let sparse_targets =
            spec.loss.target_width(ow) != ow || matches!(spec.loss, Loss::SparseCategoricalCrossentropy { .. });
        for m in &spec.metrics {
            if m.kind.sparse_targets() != sparse_targets {
                let want = if sparse_targets { "integer labels" } else { "targets shaped like the output" };
                return Err(invalid(format!("metric '{}' does not fit this loss, whose targets are {want}", m.name)));
            }
        }
        let last = self.net.body.layers.last().expect("built").final_activation();
        self.compiled = Some(Compiled {
            loss: spec.loss,
            optimizer: Optimizer::new(&spec.optimizer, self.net.params.len())?,
            metrics: spec.metrics.clone(),
            fused: spec.loss.fuses_with(last),
        });
        Ok(())
    }

    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    fn compiled(&self, what: &str) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| Error::InvalidState(format!("you must call compile() before {what}()")))
    }

    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// Values per target row the compiled loss expects.
    pub fn target_width(&self) -> Result<usize> {
        Ok(self.compiled("fit")?.loss.target_width(self.net.output_width()))
    }

    fn widths(&self, c: &Compiled) -> (usize, usize, usize) {
        let ow = self.net.output_width();
        (self.net.input_width(), c.loss.target_width(ow), ow)
    }

    /// Checks shapes and values of a data set once, before any step runs.
    pub fn validate(&self, data: &Dataset<'_>, what: &str) -> Result<()> {
        let c = self.compiled(what)?;
        let (xw, tw, ow) = self.widths(c);
        if data.rows == 0 {
            return Err(invalid(format!("{what}: x is empty (0 samples)")));
        }
        if data.x.len() != data.rows * xw {
            return Err(invalid(format!("{what}: x must hold {xw} values per sample")));
        }
        if data.y.len() != data.rows * tw {
            return Err(invalid(format!(
                "{what}: y must hold {tw} value(s) per sample for this loss; got {} values for {} samples",
                data.y.len(),
                data.rows
            )));
        }
        if let Some(w) = data.weights {
            if w.len() != data.rows {
                return Err(invalid(format!("{what}: sample_weight must hold one value per sample")));
            }
            if let Some(&bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(invalid(format!("{what}: sample weights must be finite and >= 0; found {bad}")));
            }
        }
        if let Some(i) = first_non_finite(data.x) {
            return Err(invalid(format!("{what}: x contains NaN or Inf (sample {}, feature {})", i / xw, i % xw)));
        }
        c.loss.validate_targets(data.y, ow)
    }

    /// Starts an epoch over `rows` samples: draws the sample order when shuffling.
    pub fn begin_epoch(&mut self, rows: usize, batch_size: usize, shuffle: bool) -> Result<()> {
        let c = self.compiled("fit")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let running = Running::new(&c.metrics);
        // L-BFGS is a full-batch method: one call per epoch over every sample.
        let full_batch = c.optimizer.is_lbfgs();
        if shuffle {
            self.order.clear();
            self.order.extend(0..rows);
            self.shuffle_rng.shuffle(&mut self.order);
        }
        let batch_size = if full_batch { rows.max(1) } else { batch_size.min(rows.max(1)) };
        self.epoch = EpochState { batch_size, shuffle, rows, step: 0, running, nan_at: None };
        let per_epoch = rows.div_ceil(batch_size) as u64;
        if let Some(o) = self.optimizer_mut() {
            o.steps_per_epoch = per_epoch.max(1);
        }
        Ok(())
    }

    /// Steps of the current epoch; `steps_done() == steps_total()` when it is over.
    pub fn steps_total(&self) -> usize {
        self.epoch.rows.div_ceil(self.epoch.batch_size.max(1))
    }

    pub fn steps_done(&self) -> usize {
        self.epoch.step
    }

    /// The step of the current epoch whose loss was not finite, when `stop_on_nan` stopped it.
    pub fn nan_at(&self) -> Option<usize> {
        self.epoch.nan_at
    }

    /// Runs steps of the current epoch until it ends or `deadline` passes (at least one step).
    /// Returns `true` when the epoch is complete.
    /// At most `max_steps` steps run (a per-batch callback asks for one at a time).
    pub fn train_steps(&mut self, data: &Dataset<'_>, deadline: Option<Instant>, max_steps: usize) -> Result<bool> {
        if data.rows != self.epoch.rows {
            return Err(invalid("train_steps: data differs from the one the epoch began with"));
        }
        let this = &mut *self;
        threads::install(move || this.train_steps_in_pool(data, deadline, max_steps.max(1)))
    }

    fn train_steps_in_pool(&mut self, data: &Dataset<'_>, deadline: Option<Instant>, max_steps: usize) -> Result<bool> {
        let c =
            self.compiled.as_ref().ok_or_else(|| Error::InvalidState("you must call compile() before fit()".into()))?;
        let (xw, tw, _) = self.widths(c);
        let c = self.compiled.as_mut().expect("checked");
        let e = &mut self.epoch;
        let g = &mut self.gather;
        let bs = e.batch_size;
        if e.shuffle {
            g.x.resize(bs * xw, 0.0);
            g.y.resize(bs * tw, 0.0);
            g.w.resize(if data.weights.is_some() { bs } else { 0 }, 0.0);
        }
        if c.optimizer.is_lbfgs() {
            lbfgs_step(&mut self.net, &mut self.ws, c, data, &mut e.running);
            e.step = e.rows.div_ceil(bs);
            return Ok(true);
        }
        let stop_on_nan = self.stop_on_nan;
        let backup = &mut self.backup;
        let mut monitor = self.grad_monitor.as_mut();
        let mut taken = 0;
        while e.step * bs < e.rows && e.nan_at.is_none() {
            let lo = e.step * bs;
            let hi = (lo + bs).min(e.rows);
            let batch = if e.shuffle {
                let rows = hi - lo;
                for (r, &src) in self.order[lo..hi].iter().enumerate() {
                    g.x[r * xw..(r + 1) * xw].copy_from_slice(&data.x[src * xw..(src + 1) * xw]);
                    g.y[r * tw..(r + 1) * tw].copy_from_slice(&data.y[src * tw..(src + 1) * tw]);
                    if let Some(w) = data.weights {
                        g.w[r] = w[src];
                    }
                }
                Dataset {
                    x: &g.x[..rows * xw],
                    y: &g.y[..rows * tw],
                    weights: data.weights.map(|_| &g.w[..rows]),
                    rows,
                }
            } else {
                data.slice(lo, hi, xw, tw)
            };
            let guard = if stop_on_nan { Some(&mut *backup) } else { None };
            if !train_step(&mut self.net, &mut self.ws, c, &batch, &mut e.running, guard, monitor.as_deref_mut()) {
                e.nan_at = Some(e.step);
                return Ok(true);
            }
            e.step += 1;
            taken += 1;
            if taken >= max_steps || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(e.step * bs >= e.rows || e.nan_at.is_some())
    }

    /// Loss and metrics of the current epoch so far.
    pub fn epoch_logs(&self) -> Logs {
        let metrics = self.compiled.as_ref().map_or(&[][..], |c| &c.metrics[..]);
        self.epoch.running.logs(metrics)
    }

    /// A whole epoch in one call (what Rust callers and tests use).
    pub fn fit_epoch(&mut self, data: &Dataset<'_>, batch_size: usize, shuffle: bool) -> Result<Logs> {
        self.validate(data, "fit")?;
        self.begin_epoch(data.rows, batch_size, shuffle)?;
        self.train_steps(data, None, usize::MAX)?;
        Ok(self.epoch_logs())
    }

    /// One optimizer step on exactly this batch; returns its loss and metrics.
    pub fn train_on_batch(&mut self, data: &Dataset<'_>) -> Result<Logs> {
        self.validate(data, "train_on_batch")?;
        let this = &mut *self;
        threads::install(move || {
            let c = this.compiled.as_mut().expect("validated");
            let mut running = Running::new(&c.metrics);
            if c.optimizer.is_lbfgs() {
                lbfgs_step(&mut this.net, &mut this.ws, c, data, &mut running);
            } else {
                train_step(&mut this.net, &mut this.ws, c, data, &mut running, None, None);
            }
            Ok(running.logs(&c.metrics))
        })
    }

    /// Mean loss over `data` as one batch (with regularization penalties), with its gradient left
    /// in `self.net.params.grads` (no update). What gradient checks compare against finite
    /// differences.
    pub fn compute_gradients(&mut self, data: &Dataset<'_>) -> Result<f64> {
        self.validate(data, "compute_gradients")?;
        let this = &mut *self;
        threads::install(move || {
            let c = this.compiled.as_ref().expect("validated");
            let mut running = Running::new(&c.metrics);
            this.net.reset_noise();
            forward_backward(&mut this.net, &mut this.ws, c, data, &mut running);
            Ok(running.loss_sum / data.rows as f64)
        })
    }

    /// The shuffling and noise streams as JSON, so a saved model resumes with the same draws.
    pub fn rng_state(&self) -> String {
        serde_json::to_string(&(&self.shuffle_rng, self.net.noise())).expect("streams serialise")
    }

    /// Restores streams from [`Model::rng_state`].
    pub fn set_rng_state(&mut self, json: &str) -> Result<()> {
        let (shuffle, noise): (Stream, Stream) =
            serde_json::from_str(json).map_err(|e| invalid(format!("corrupted random state: {e}")))?;
        self.shuffle_rng = shuffle;
        self.net.set_noise(noise);
        Ok(())
    }

    /// A one-line description of the layers and loss (for messages).
    pub fn describe(&self) -> String {
        let acts: Vec<String> = self.net.body.layers.iter().map(|l| format!("{:?}", l.final_activation())).collect();
        format!("layers [{}], loss {:?}", acts.join(", "), self.compiled.as_ref().map(|c| c.loss))
    }

    /// Loss and metrics over `data` in inference mode, batch by batch.
    pub fn evaluate(&mut self, data: &Dataset<'_>, batch_size: usize) -> Result<Logs> {
        self.validate(data, "evaluate")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let this = &mut *self;
        threads::install(move || {
            let c = this.compiled.as_ref().expect("validated");
            let (xw, tw, ow) = this.widths(c);
            let penalty = this.net.params.penalty();
            let mut running = Running::new(&c.metrics);
            for lo in (0..data.rows).step_by(batch_size) {
                let b = data.slice(lo, (lo + batch_size).min(data.rows), xw, tw);
                this.net.forward(&mut this.ws, b.x, b.rows, false);
                let out = this.ws.outputs.last().expect("built");
                let sum = c.loss.evaluate(out, b.y, b.weights, b.rows, ow, c.fused, 1.0, None);
                running.add(c, sum, penalty, out, &b, ow);
            }
            Ok(running.logs(&c.metrics))
        })
    }

    /// Inference on `rows` samples of `x`, written row-major into `out`.
    pub fn predict(&mut self, x: &[f32], rows: usize, batch_size: usize, out: &mut [f32]) -> Result<()> {
        self.call(x, rows, batch_size, false, out)
    }

    /// Forward pass in inference or (for inspection: dropout, batch statistics) training mode.
    pub fn call(&mut self, x: &[f32], rows: usize, batch_size: usize, training: bool, out: &mut [f32]) -> Result<()> {
        let (xw, ow) = (self.net.input_width(), self.net.output_width());
        if x.len() != rows * xw {
            return Err(invalid(format!("predict: x must hold {xw} values per sample")));
        }
        if out.len() != rows * ow {
            return Err(invalid("predict: output buffer has the wrong size"));
        }
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        if let Some(i) = first_non_finite(x) {
            return Err(invalid(format!("predict: x contains NaN or Inf (sample {}, feature {})", i / xw, i % xw)));
        }
        let this = &mut *self;
        threads::install(move || {
            for lo in (0..rows).step_by(batch_size) {
                let hi = (lo + batch_size).min(rows);
                this.net.forward(&mut this.ws, &x[lo * xw..hi * xw], hi - lo, training);
                let last = this.ws.outputs.last().expect("built");
                out[lo * ow..hi * ow].copy_from_slice(&last[..(hi - lo) * ow]);
            }
            Ok(())
        })
    }
}

/// Forward, loss, backward and update for one batch.
///
/// With a `guard` buffer (TerminateOnNaN), a batch whose loss is not finite is not applied, and
/// an update that makes any weight non-finite is undone from the copy taken before it: the model
/// keeps its last finite weights and `false` is returned.
fn train_step(
    net: &mut Network,
    ws: &mut Workspace,
    c: &mut Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
    guard: Option<&mut Vec<f32>>,
    monitor: Option<&mut GradMonitor>,
) -> bool {
    let loss = forward_backward(net, ws, c, b, running);
    let p = &mut net.params;
    if let Some(m) = monitor {
        // Raw gradients, before any clipping the optimizer applies.
        m.record(p);
    }
    match guard {
        None => {
            c.optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            true
        }
        Some(backup) => {
            if !loss.is_finite() {
                return false;
            }
            backup.clear();
            backup.extend_from_slice(&p.values);
            c.optimizer.step(&mut p.values, &mut p.grads, &p.tensors);
            if first_non_finite(&p.values).is_some() {
                p.values.copy_from_slice(backup);
                return false;
            }
            true
        }
    }
}

/// Forward, loss and backward: leaves the gradient of the batch loss (mean plus regularization
/// penalties) in `net.params.grads`.
fn forward_backward(
    net: &mut Network,
    ws: &mut Workspace,
    c: &Compiled,
    b: &Dataset<'_>,
    running: &mut Running,
) -> f64 {
    let ow = net.output_width();
    net.forward(ws, b.x, b.rows, true);
    let last = ws.outputs.len() - 1;
    let (out, grad) = (&ws.outputs[last], &mut ws.grads[last]);
    let sum = c.loss.evaluate(out, b.y, b.weights, b.rows, ow, c.fused, 1.0 / b.rows as f32, Some(grad));
    net.backward(ws, b.x, b.rows, c.fused);
    let penalty = net.params.apply_regularizers();
    running.add(c, sum, penalty, &ws.outputs[last], b, ow);
    // The objective whose gradient was just computed.
    sum / b.rows as f64 + penalty
}

/// One full-batch L-BFGS call (up to `max_iter` iterations with line search) on `data`, then
/// the loss and metrics at the final weights into `running`.
fn lbfgs_step(net: &mut Network, ws: &mut Workspace, c: &mut Compiled, data: &Dataset<'_>, running: &mut Running) {
    let lr = c.optimizer.current_learning_rate();
    let State::Lbfgs(mut lbfgs) = std::mem::replace(&mut c.optimizer.state, State::Sgd(Sgd::new(0.0, false, 0))) else {
        unreachable!("called for L-BFGS only")
    };
    let mut w = net.params.values.clone();
    let mut g = vec![0.0f32; w.len()];
    let cc: &Compiled = c;
    lbfgs.run(lr, &mut w, &mut g, |w, g| {
        net.params.values.copy_from_slice(w);
        // The same dropout masks at every point of the line search.
        net.reset_noise();
        let loss = forward_backward(net, ws, cc, data, &mut Running::new(&cc.metrics));
        g.copy_from_slice(&net.params.grads);
        loss
    });
    net.params.values.copy_from_slice(&w);
    // Loss and metrics at the final weights.
    net.forward(ws, data.x, data.rows, false);
    let ow = net.output_width();
    let out = ws.outputs.last().expect("built");
    let sum = c.loss.evaluate(out, data.y, data.weights, data.rows, ow, c.fused, 1.0, None);
    running.add(c, sum, net.params.penalty(), out, data, ow);
    c.optimizer.state = State::Lbfgs(lbfgs);
    c.optimizer.iterations += 1;
    c.optimizer.last_learning_rate = lr;
}

/// Index of the first NaN or infinity, scanning in parallel for large inputs.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    if x.len() < 2 * CHUNK {
        return x.iter().position(|v| !v.is_finite());
    }
    threads::install(|| {
        x.par_chunks(CHUNK)
            .enumerate()
            .find_first(|(_, c)| c.iter().any(|v| !v.is_finite()))
            .map(|(k, c)| k * CHUNK + c.iter().position(|v| !v.is_finite()).expect("found"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::layers::LayerSpec;
    use crate::regularizer::Regularizer;
    use crate::test_support::{check_gradients, dense, model, random};

    const SOFTMAX: Activation = Activation::Softmax { temperature: 1.0 };

    #[test]
    fn dense_gradients_for_every_activation_and_loss() {
        let rows = 5;
        let x = random(rows * 4, 1);
        let onehot: Vec<f32> = (0..rows).flat_map(|i| (0..3).map(move |j| (j == i % 3) as u8 as f32)).collect();
        let labels: Vec<f32> = (0..rows).map(|i| (i % 3) as f32).collect();
        let regress = random(rows * 3, 2);
        // Targets far from every output, so no residual crosses MAE's kink during the check.
        let far: Vec<f32> = regress.iter().map(|v| v + 5.0).collect();
        let dist: Vec<f32> = (0..rows).flat_map(|_| [0.2, 0.5, 0.3]).collect();
        let cce = |from_logits, label_smoothing| Loss::CategoricalCrossentropy { from_logits, label_smoothing };
        let bce = |from_logits, label_smoothing| Loss::BinaryCrossentropy { from_logits, label_smoothing };
        let cases: Vec<(Activation, Loss, &[f32])> = vec![
            (Activation::Linear, Loss::MeanSquaredError, &regress),
            (Activation::Tanh, Loss::MeanAbsoluteError, &far),
            (Activation::Linear, Loss::Huber { delta: 0.5 }, &regress),
            (SOFTMAX, cce(false, 0.0), &onehot),
            (SOFTMAX, cce(false, 0.1), &onehot),
            (Activation::Sigmoid, cce(false, 0.0), &onehot),
            (Activation::Linear, cce(true, 0.0), &onehot),
            (SOFTMAX, Loss::SparseCategoricalCrossentropy { from_logits: false }, &labels),
            (Activation::Linear, Loss::SparseCategoricalCrossentropy { from_logits: true }, &labels),
            (Activation::Sigmoid, bce(false, 0.0), &onehot),
            (Activation::Sigmoid, bce(false, 0.1), &onehot),
            (Activation::Linear, bce(true, 0.0), &onehot),
            (SOFTMAX, Loss::KlDivergence, &dist),
            (SOFTMAX, Loss::Hellinger, &dist),
        ];
        for hidden in crate::activation::ALL_FOR_TESTS {
            for &(out_act, loss, y) in &cases {
                let mut m = model(vec![dense("a", 6, hidden), dense("b", 3, out_act)], loss, 4);
                check_gradients(&mut m, &x, y, rows);
            }
        }
    }

    #[test]
    fn prelu_and_regularizer_gradients() {
        let rows = 6;
        let x = random(rows * 4, 7);
        let y = random(rows * 2, 8);
        let prelu = |shared: Vec<usize>| LayerSpec::PRelu {
            name: "p".into(),
            alpha_initializer: crate::layers::InitSpec {
                init: crate::init::Initializer::Constant { value: 0.25 },
                seed: None,
            },
            shared_axes: shared,
            alpha_regularizer: Some(Regularizer::L2 { l2: 0.1 }),
        };
        let mut a = dense("a", 5, Activation::Linear);
        if let LayerSpec::Dense { kernel_regularizer, bias_regularizer, .. } = &mut a {
            *kernel_regularizer = Some(Regularizer::L1l2 { l1: 0.01, l2: 0.02 });
            *bias_regularizer = Some(Regularizer::Lp { p: 3.0, factor: 0.1 });
        }
        let mut m = model(vec![a.clone(), prelu(vec![]), dense("b", 2, Activation::Linear)], Loss::MeanSquaredError, 4);
        check_gradients(&mut m, &x, &y, rows);
        assert_eq!(m.net.params.tensors[2].shape, vec![5]);
        let mut m = model(vec![a, prelu(vec![1]), dense("b", 2, Activation::Linear)], Loss::MeanSquaredError, 4);
        assert_eq!(m.net.params.tensors[2].shape, vec![1]);
        check_gradients(&mut m, &x, &y, rows);
    }

    #[test]
    fn sample_weights_scale_each_sample_loss() {
        let rows = 4;
        let x = random(rows * 4, 9);
        let y = random(rows * 3, 10);
        let mut m = model(vec![dense("a", 3, Activation::Linear)], Loss::MeanSquaredError, 4);
        let w = [1.0, 0.0, 2.0, 0.5];
        let weighted = m.evaluate(&Dataset { x: &x, y: &y, weights: Some(&w), rows }, 4).unwrap().get("loss").unwrap();
        let mut want = 0.0;
        for i in 0..rows {
            let one = m.evaluate(&Dataset::new(&x[i * 4..(i + 1) * 4], &y[i * 3..(i + 1) * 3], 1), 1).unwrap();
            want += w[i] as f64 * one.get("loss").unwrap();
        }
        assert!((weighted - want / rows as f64).abs() < 1e-6, "{weighted} vs {}", want / rows as f64);
    }

    #[test]
    fn standalone_activation_layer_fuses_like_a_dense_activation() {
        let rows = 4;
        let x = random(rows * 4, 3);
        let labels: Vec<f32> = (0..rows).map(|i| (i % 3) as f32).collect();
        let layers = vec![
            dense("a", 5, Activation::Relu),
            dense("b", 3, Activation::Linear),
            LayerSpec::Activation { name: "s".into(), activation: SOFTMAX },
        ];
        let mut m = model(layers.clone(), Loss::SparseCategoricalCrossentropy { from_logits: false }, 4);
        check_gradients(&mut m, &x, &labels, rows);
        let layers = vec![
            layers[0].clone(),
            LayerSpec::Activation { name: "t".into(), activation: Activation::Tanh },
            layers[1].clone(),
        ];
        let mut m = model(layers, Loss::MeanSquaredError, 4);
        check_gradients(&mut m, &x, &random(rows * 3, 4), rows);
    }

    #[test]
    fn same_seed_gives_identical_training() {
        let rows = 64;
        let x = random(rows * 4, 5);
        let labels: Vec<f32> = (0..rows).map(|i| (i % 3) as f32).collect();
        let run = || {
            let mut m = model(
                vec![dense("a", 8, Activation::Relu), dense("b", 3, SOFTMAX)],
                Loss::SparseCategoricalCrossentropy { from_logits: false },
                4,
            );
            for _ in 0..3 {
                m.fit_epoch(&Dataset::new(&x, &labels, rows), 8, true).unwrap();
            }
            m.net.params.values.clone()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn training_reduces_the_loss_on_a_separable_problem() {
        let rows = 200;
        let x = random(rows * 2, 6);
        let labels: Vec<f32> = x.chunks(2).map(|p| (p[0] + p[1] > 0.0) as u8 as f32).collect();
        let mut m = model(
            vec![dense("a", 8, Activation::Tanh), dense("b", 2, SOFTMAX)],
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            2,
        );
        let data = Dataset::new(&x, &labels, rows);
        let first = m.fit_epoch(&data, 16, true).unwrap().get("loss").unwrap();
        let mut last = first;
        for _ in 0..30 {
            last = m.fit_epoch(&data, 16, true).unwrap().get("loss").unwrap();
        }
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let sparse = Loss::SparseCategoricalCrossentropy { from_logits: false };
        let mut m = model(vec![dense("a", 3, SOFTMAX)], sparse, 2);
        let fit = |m: &mut Model, x: &[f32], y: &[f32], bs| m.fit_epoch(&Dataset::new(x, y, 2), bs, false);
        assert!(fit(&mut m, &[0.0, 1.0, f32::NAN, 0.0], &[0.0, 1.0], 1).is_err());
        let x = [0.0, 1.0, 1.0, 0.0];
        assert!(fit(&mut m, &x, &[0.0, 3.0], 1).is_err());
        assert!(fit(&mut m, &x[..3], &[0.0, 1.0], 1).is_err());
        assert!(fit(&mut m, &x, &[0.0, 1.0], 0).is_err());
        let w = [1.0, -1.0];
        assert!(m.evaluate(&Dataset { x: &x, y: &[0.0, 1.0], weights: Some(&w), rows: 2 }, 2).is_err());
        let spec = ModelSpec { input_shape: vec![2], layers: vec![dense("a", 1, Activation::Linear)] };
        let mut uncompiled = Model::new(&spec, 0).unwrap();
        assert!(matches!(fit(&mut uncompiled, &x, &[0.0, 1.0], 1), Err(Error::InvalidState(_))));
    }
}
