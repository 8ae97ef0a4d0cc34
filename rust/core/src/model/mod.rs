//! The trainable model: a network plus what `compile` chose (per-output losses and metrics, the
//! optimizer), and the training loop. An epoch is driven in slices of steps
//! ([`Model::train_steps`]) so the caller can regain control about ten times a second
//! (progress display, Ctrl-C) without ever being entered per batch.
//!
//! - `data.rs`: the borrowed data sets and the shuffled-batch gather;
//! - `heads.rs`: per-output losses, weights, metrics and their log names;
//! - `step.rs`: the objective of one batch (forward, weighted losses, backward, penalties);
//! - `trainer.rs`: how a step trains (minibatch first-order rules, or full-batch L-BFGS);
//! - `monitor.rs`: per-layer gradient norms;
//! - `inference.rs`: predict and evaluate through a shared reference (threads at once).

mod data;
mod heads;
mod inference;
mod monitor;
mod step;
#[cfg(test)]
mod tests;
mod trainer;

use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};
use smallvec::SmallVec;

pub use data::{first_non_finite, Dataset, Slices};
pub use heads::{CompileSpec, HeadSpec, Logs};
pub use inference::Scratch;
pub use monitor::GradMonitor;

use crate::error::{invalid, Error, Result};
use crate::graph::{width, Graph, GraphSpec, GraphWorkspace};
use crate::network::Network;
use crate::rng::Stream;
use crate::threads;
use data::Gather;
use heads::{Compiled, Head, Running};
use step::forward_backward;
use trainer::train_step;
pub use trainer::{FullBatchLbfgs, Trainer};

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

pub struct Model {
    pub net: Network,
    compiled: Option<Compiled>,
    ws: GraphWorkspace,
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

/// Purpose tag of the shuffling stream (initializers use the tensor index).
const SHUFFLE_STREAM: u64 = u64::MAX;

impl Model {
    /// Builds the network of `spec` (a graph, or a `ModelSpec` through `GraphSpec::from`).
    pub fn new(spec: impl Into<GraphSpec>, seed: u64) -> Result<Self> {
        Ok(Self {
            net: Network::build(&spec.into(), seed)?,
            compiled: None,
            ws: GraphWorkspace::default(),
            shuffle_rng: Stream::new(seed, SHUFFLE_STREAM),
            order: Vec::new(),
            gather: Gather::default(),
            epoch: EpochState::default(),
            stop_on_nan: false,
            backup: Vec::new(),
            grad_monitor: None,
        })
    }

    /// Chooses losses, optimizer and metrics; the optimizer state starts afresh.
    pub fn compile(&mut self, spec: &CompileSpec) -> Result<()> {
        let outputs = self.net.outputs().len();
        Compiled::validate_heads(&spec.heads, outputs)?;
        let mut heads = Vec::with_capacity(outputs);
        let mut fused_nodes = vec![false; self.net.graph.nodes.len()];
        for (k, h) in spec.heads.iter().enumerate() {
            let ow = self.net.output_width(k);
            let mut fused = false;
            if let Some(loss) = h.loss {
                let sparse_targets = loss.target_width(ow) != ow
                    || matches!(loss, crate::loss::Loss::SparseCategoricalCrossentropy { .. });
                for m in &h.metrics {
                    if m.kind.sparse_targets() != sparse_targets {
                        let want = if sparse_targets { "integer labels" } else { "targets shaped like the output" };
                        return Err(invalid(format!(
                            "metric '{}' does not fit this loss, whose targets are {want}",
                            m.name
                        )));
                    }
                }
                let r = self.net.outputs()[k];
                // A tensor that is also read elsewhere (or by a second head) needs its true
                // gradient, so only a tensor read by this head alone may fuse.
                fused = self.net.graph.fusable_activation(r).is_some_and(|a| loss.fuses_with(a));
                if let (true, crate::graph::TensorRef::Node(j)) = (fused, r) {
                    fused_nodes[j] = true;
                }
            } else if !h.metrics.is_empty() {
                return Err(invalid(format!("output '{}' has metrics but no loss", h.name)));
            }
            heads.push(Head { spec: h.clone(), fused });
        }
        let losses = heads.iter().filter(|h| h.spec.loss.is_some()).count();
        self.compiled = Some(Compiled {
            heads,
            trainer: Trainer::new(&spec.optimizer, self.net.params.len())?,
            fused_nodes,
            many_losses: losses > 1,
            many_outputs: outputs > 1,
        });
        Ok(())
    }

    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    fn compiled(&self, what: &str) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| not_compiled(what))
    }

    /// Runs `f` in the engine's thread pool on the network, its buffers and the compiled state
    /// (an error before `compile`).
    fn in_pool<T: Send>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Network, &mut GraphWorkspace, &mut Compiled) -> T + Send,
    ) -> Result<T> {
        let Self { net, ws, compiled, .. } = self;
        let c = compiled.as_mut().ok_or_else(|| not_compiled(what))?;
        Ok(threads::install(move || f(net, ws, c)))
    }

    /// The training method chosen at `compile`.
    pub fn trainer(&self) -> Option<&Trainer> {
        self.compiled.as_ref().map(|c| &c.trainer)
    }

    pub fn trainer_mut(&mut self) -> Option<&mut Trainer> {
        self.compiled.as_mut().map(|c| &mut c.trainer)
    }

    /// Freezes the layers flagged `true` (one flag per layer of the graph, in spec order).
    pub fn set_frozen(&mut self, frozen: &[bool]) -> Result<()> {
        self.net.graph.set_frozen(frozen, &mut self.net.params)
    }

    /// Values per target row that each output's loss expects (0 for an output without loss).
    pub fn target_widths(&self) -> Result<Vec<usize>> {
        self.target_widths_on(&self.net.graph)
    }

    /// Per output of `graph` (this model's, at some input shapes), values per target row.
    fn target_widths_on(&self, graph: &Graph) -> Result<Vec<usize>> {
        let c = self.compiled("fit")?;
        Ok(c.heads.iter().zip(&graph.outputs).map(|(h, &r)| h.target_width(width(graph.shape(r)))).collect())
    }

    fn widths(&self) -> (Vec<usize>, Vec<usize>) {
        widths_on(&self.net.graph, self.target_widths().unwrap_or_default())
    }

    /// Checks shapes and values of a data set once, before any step runs; the graph first takes
    /// the data's shapes on the model's unknown (`None`) input dimensions.
    pub fn validate(&mut self, data: &Dataset<'_>, what: &str) -> Result<()> {
        self.adapt_to(data)?;
        self.validate_on(&self.net.graph, data, what)
    }

    /// [`Model::validate`] against `graph` (this model's, instantiated at the data's shapes).
    fn validate_on(&self, graph: &Graph, data: &Dataset<'_>, what: &str) -> Result<()> {
        let c = self.compiled(what)?;
        let tw = self.target_widths_on(graph)?;
        if data.rows == 0 {
            return Err(invalid(format!("{what}: x is empty (0 samples)")));
        }
        self.validate_x(graph, &data.x, data.rows, what)?;
        if data.y.len() != c.heads.len() {
            return Err(invalid(format!(
                "{what}: the model has {} output(s); got {} target array(s)",
                c.heads.len(),
                data.y.len()
            )));
        }
        if !data.weights.is_empty() && data.weights.len() != c.heads.len() {
            return Err(invalid(format!("{what}: expected one sample_weight entry per output")));
        }
        for (k, h) in c.heads.iter().enumerate() {
            let Some(loss) = h.spec.loss else { continue };
            let y = data.y[k];
            if y.len() != data.rows * tw[k] {
                return Err(invalid(format!(
                    "{what}: y{} must hold {} value(s) per sample for this loss; got {} values for {} samples",
                    self.output_label(k),
                    tw[k],
                    y.len(),
                    data.rows
                )));
            }
            if let Some(w) = data.weights_of(k) {
                if w.len() != data.rows {
                    return Err(invalid(format!("{what}: sample_weight must hold one value per sample")));
                }
                if let Some(&bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
                    return Err(invalid(format!("{what}: sample weights must be finite and >= 0; found {bad}")));
                }
            }
            loss.validate_targets(y, width(graph.shape(graph.outputs[k])))?;
        }
        Ok(())
    }

    /// Re-instantiates the graph at per-sample input `shapes` (a call's data; see
    /// [`Network::set_input_shapes`]), with fresh work buffers when it changes.
    pub fn set_input_shapes(&mut self, shapes: &[&[usize]]) -> Result<()> {
        if self.net.set_input_shapes(shapes)? {
            self.ws = GraphWorkspace::default();
        }
        Ok(())
    }

    fn adapt_to(&mut self, data: &Dataset<'_>) -> Result<()> {
        if data.input_shapes.is_empty() {
            return Ok(());
        }
        let shapes: SmallVec<[&[usize]; 4]> = data.input_shapes.iter().map(|s| s.as_slice()).collect();
        self.set_input_shapes(&shapes)
    }

    /// ` for output 'name'` when the model has several outputs.
    fn output_label(&self, k: usize) -> String {
        match &self.compiled {
            Some(c) if c.heads.len() > 1 => format!(" for output '{}'", c.heads[k].spec.name),
            _ => String::new(),
        }
    }

    fn validate_x(&self, graph: &Graph, x: &[&[f32]], rows: usize, what: &str) -> Result<()> {
        let xw: Vec<usize> = graph.inputs.iter().map(|i| width(&i.shape)).collect();
        if x.len() != xw.len() {
            return Err(invalid(format!("{what}: the model has {} input(s); got {} array(s)", xw.len(), x.len())));
        }
        for (k, (x, &w)) in x.iter().zip(&xw).enumerate() {
            let name = &graph.inputs[k].name;
            let label = if xw.len() > 1 { format!(" (input '{name}')") } else { String::new() };
            if x.len() != rows * w {
                return Err(invalid(format!("{what}: x{label} must hold {w} values per sample")));
            }
            if let Some(i) = first_non_finite(x) {
                return Err(invalid(format!(
                    "{what}: x{label} contains NaN or Inf (sample {}, feature {})",
                    i / w,
                    i % w
                )));
            }
        }
        Ok(())
    }

    /// Starts an epoch over `rows` samples: draws the sample order when shuffling.
    pub fn begin_epoch(&mut self, rows: usize, batch_size: usize, shuffle: bool) -> Result<()> {
        let c = self.compiled("fit")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let running = Running::new(&c.heads);
        let batch_size = c.trainer.batch_size(batch_size, rows);
        if shuffle {
            self.order.clear();
            self.order.extend(0..rows);
            self.shuffle_rng.shuffle(&mut self.order);
        }
        self.epoch = EpochState { batch_size, shuffle, rows, step: 0, running, nan_at: None };
        let per_epoch = rows.div_ceil(batch_size) as u64;
        if let Some(t) = self.trainer_mut() {
            t.set_steps_per_epoch(per_epoch);
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
        self.train_steps_while(data, max_steps, &|| deadline.is_none_or(|d| Instant::now() < d))
    }

    /// [`Model::train_steps`], asking `go_on` after each step whether to take another (a caller
    /// that shares the model stops when another thread waits for it).
    pub fn train_steps_while(
        &mut self,
        data: &Dataset<'_>,
        max_steps: usize,
        go_on: &(dyn Fn() -> bool + Sync),
    ) -> Result<bool> {
        if data.rows != self.epoch.rows {
            return Err(invalid("train_steps: data differs from the one the epoch began with"));
        }
        self.adapt_to(data)?;
        self.compiled("fit")?;
        self.net.graph.try_prepare(&mut self.ws, self.epoch.batch_size.max(1))?;
        let this = &mut *self;
        threads::install_busy(move || this.train_steps_in_pool(data, go_on, max_steps.max(1)))
    }

    fn train_steps_in_pool(
        &mut self,
        data: &Dataset<'_>,
        go_on: &(dyn Fn() -> bool + Sync),
        max_steps: usize,
    ) -> Result<bool> {
        let (xw, tw) = self.widths();
        let c = self.compiled.as_mut().ok_or_else(|| not_compiled("fit"))?;
        let e = &mut self.epoch;
        let bs = e.batch_size;
        if e.shuffle {
            self.gather.prepare(data, bs, &xw, &tw)?;
        }
        let stop_on_nan = self.stop_on_nan;
        let backup = &mut self.backup;
        let mut monitor = self.grad_monitor.as_mut();
        let mut taken = 0;
        while e.step * bs < e.rows && e.nan_at.is_none() {
            let lo = e.step * bs;
            let hi = (lo + bs).min(e.rows);
            let guard = if stop_on_nan { Some(&mut *backup) } else { None };
            let (net, ws, running, monitor) = (&mut self.net, &mut self.ws, &mut e.running, monitor.as_deref_mut());
            // Two branches, not one binding: a gathered batch borrows the gather buffers for
            // this step only, a sliced one borrows the caller's data.
            let applied = if e.shuffle {
                let batch = self.gather.batch(data, &self.order[lo..hi], &xw, &tw);
                train_step(net, ws, c, &batch, running, guard, monitor)
            } else {
                train_step(net, ws, c, &data.slice(lo, hi, &xw, &tw), running, guard, monitor)
            };
            if !applied {
                e.nan_at = Some(e.step);
                return Ok(true);
            }
            e.step += 1;
            taken += 1;
            if taken >= max_steps || !go_on() {
                break;
            }
        }
        Ok(e.step * bs >= e.rows || e.nan_at.is_some())
    }

    /// Loss and metrics of the current epoch so far.
    pub fn epoch_logs(&self) -> Logs {
        match &self.compiled {
            Some(c) => self.epoch.running.logs(c),
            None => Logs::default(),
        }
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
        self.net.graph.try_prepare(&mut self.ws, data.rows)?;
        self.in_pool("train_on_batch", |net, ws, c| {
            let mut running = Running::new(&c.heads);
            train_step(net, ws, c, data, &mut running, None, None);
            running.logs(c)
        })
    }

    /// Mean objective over `data` as one batch (weighted losses plus regularization penalties),
    /// with its gradient left in `self.net.params.grads` (no update). What gradient checks
    /// compare against finite differences.
    pub fn compute_gradients(&mut self, data: &Dataset<'_>) -> Result<f64> {
        self.validate(data, "compute_gradients")?;
        self.net.graph.try_prepare(&mut self.ws, data.rows)?;
        self.in_pool("compute_gradients", |net, ws, c| {
            let mut running = Running::new(&c.heads);
            net.reset_noise();
            forward_backward(net, ws, &c.heads, &c.fused_nodes, data, &mut running);
            running.mean_loss()
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

    /// A one-line description of the layers and losses (for messages).
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.net.graph.layers.iter().map(|l| l.name.as_str()).collect();
        let losses: Vec<_> = self.compiled.iter().flat_map(|c| c.heads.iter().map(|h| h.spec.loss)).collect();
        format!("layers [{}], losses {losses:?}", names.join(", "))
    }

    /// Loss and metrics over `data` in inference mode, batch by batch.
    pub fn evaluate(&mut self, data: &Dataset<'_>, batch_size: usize) -> Result<Logs> {
        self.adapt_to(data)?;
        self.evaluate_with(&mut Scratch::default(), 0, data, batch_size)
    }

    /// Inference on every input's samples (`x[k]` for input `k`, one row per sample): per
    /// output, a new array `(rows, *output_shape)`.
    pub fn predict(&mut self, x: &[ArrayViewD<'_, f32>], batch_size: usize) -> Result<Vec<ArrayD<f32>>> {
        let rows = rows_of(x);
        let mut out: Vec<ArrayD<f32>> = (0..self.net.outputs().len())
            .map(|k| {
                let shape: Vec<usize> = std::iter::once(rows).chain(self.output_shape(k).iter().copied()).collect();
                ArrayD::zeros(shape)
            })
            .collect();
        let mut views: Vec<ArrayViewMutD<'_, f32>> = out.iter_mut().map(|o| o.view_mut()).collect();
        self.call_into(x, batch_size, false, &mut views)?;
        Ok(out)
    }

    /// Forward pass in inference or (for inspection: dropout, batch statistics) training mode,
    /// written into caller-owned arrays (`out[k]` of shape `(rows, *output_shape)` for output
    /// `k`; the binding passes numpy arrays, so nothing is copied on the way out).
    pub fn call_into(
        &mut self,
        x: &[ArrayViewD<'_, f32>],
        batch_size: usize,
        training: bool,
        out: &mut [ArrayViewMutD<'_, f32>],
    ) -> Result<()> {
        let rows = rows_of(x);
        let shapes: SmallVec<[&[usize]; 4]> = x.iter().map(|a| a.shape().get(1..).unwrap_or(&[])).collect();
        self.set_input_shapes(&shapes)?;
        let xs = x
            .iter()
            .map(|a| a.to_slice().ok_or_else(|| invalid("predict: x must be a C-contiguous array")))
            .collect::<Result<Slices<'_>>>()?;
        if out.len() != self.net.outputs().len() {
            return Err(invalid("predict: one output array per model output is needed"));
        }
        let mut bufs: SmallVec<[&mut [f32]; 4]> = SmallVec::new();
        for (k, o) in out.iter_mut().enumerate() {
            let want: Vec<usize> = std::iter::once(rows).chain(self.output_shape(k).iter().copied()).collect();
            if o.shape() != want.as_slice() {
                return Err(invalid(format!("predict: output {k} must have shape {want:?}; got {:?}", o.shape())));
            }
            bufs.push(o.as_slice_mut().ok_or_else(|| invalid("predict: outputs must be C-contiguous arrays"))?);
        }
        self.call_slices(&xs, rows, batch_size, training, &mut bufs)
    }

    /// Per-sample shape of output `k`.
    pub fn output_shape(&self, k: usize) -> &[usize] {
        self.net.graph.shape(self.net.outputs()[k])
    }

    /// Inference on `rows` samples of every input (`x[k]` for input `k`), written row-major into
    /// `out[k]` for output `k`: the slice form of [`Model::predict`], for callers that keep
    /// their own buffers.
    pub fn predict_slices(
        &mut self,
        x: &[&[f32]],
        rows: usize,
        batch_size: usize,
        out: &mut [&mut [f32]],
    ) -> Result<()> {
        self.call_slices(x, rows, batch_size, false, out)
    }

    /// The slice form of [`Model::call_into`].
    pub fn call_slices(
        &mut self,
        x: &[&[f32]],
        rows: usize,
        batch_size: usize,
        training: bool,
        out: &mut [&mut [f32]],
    ) -> Result<()> {
        self.check_call(&self.net.graph, x, rows, batch_size, out)?;
        if training {
            self.net.graph.try_prepare(&mut self.ws, batch_size.min(rows))?;
        } else {
            self.net.graph.try_prepare_inference(&mut self.ws, batch_size.min(rows))?;
        }
        let Self { net, ws, .. } = self;
        let mut noise = net.noise().clone();
        let (graph, params) = (&net.graph, &mut net.params.values);
        threads::install_busy_if(rows > batch_size, || {
            inference::forward_batches(graph, params, &mut noise, ws, x, rows, batch_size, training, out)
        });
        net.set_noise(noise);
        Ok(())
    }

    /// Weight tensor `i` as an array of its shape (a view into the flat store).
    pub fn weight(&self, i: usize) -> Option<ArrayViewD<'_, f32>> {
        self.net.params.view(i)
    }

    /// Every weight tensor, in Keras order (per layer: kernel, then bias), as owned arrays.
    pub fn get_weights(&self) -> Vec<ArrayD<f32>> {
        (0..self.net.params.tensors.len()).filter_map(|i| self.weight(i)).map(|v| v.to_owned()).collect()
    }

    /// Replaces every weight tensor (Keras order). All shapes are checked first: on error
    /// nothing changes.
    pub fn set_weights(&mut self, weights: &[ArrayViewD<'_, f32>]) -> Result<()> {
        self.net.params.set_all(weights)
    }
}

/// Rows of a list of arrays: the first axis of the first one (the model checks the others).
fn rows_of(x: &[ArrayViewD<'_, f32>]) -> usize {
    x.first().and_then(|a| a.shape().first().copied()).unwrap_or(0)
}

/// Per-sample widths of `graph`'s inputs, beside the given target widths.
fn widths_on(graph: &Graph, targets: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    (graph.inputs.iter().map(|i| width(&i.shape)).collect(), targets)
}

fn not_compiled(what: &str) -> Error {
    Error::InvalidState(format!("you must call compile() before {what}()"))
}
