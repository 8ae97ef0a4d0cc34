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
use crate::optim::{Optimizer, OptimizerSpec};
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

/// Samples and targets, row-major and borrowed (from numpy arrays, without a copy).
#[derive(Clone, Copy, Debug)]
pub struct Dataset<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub rows: usize,
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
    /// The loss absorbs the last activation (softmax + cross entropy).
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
    fn new(metrics: usize) -> Self {
        Self {
            loss_sum: 0.0,
            samples: 0.0,
            tallies: vec![Tally::default(); metrics],
        }
    }

    fn logs(&self, metrics: &[MetricSpec]) -> Logs {
        let mut v = Vec::with_capacity(1 + metrics.len());
        v.push((
            "loss".to_string(),
            if self.samples > 0.0 {
                self.loss_sum / self.samples
            } else {
                0.0
            },
        ));
        v.extend(
            metrics
                .iter()
                .zip(&self.tallies)
                .map(|(m, t)| (m.name.clone(), t.result())),
        );
        Logs(v)
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
}

pub struct Model {
    pub net: Network,
    compiled: Option<Compiled>,
    ws: Workspace,
    shuffle_rng: Stream,
    /// Sample order of the current epoch; reused across epochs.
    order: Vec<usize>,
    /// Gather buffers for shuffled batches.
    batch_x: Vec<f32>,
    batch_y: Vec<f32>,
    epoch: EpochState,
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
            batch_x: Vec::new(),
            batch_y: Vec::new(),
            epoch: EpochState::default(),
        })
    }

    /// Chooses loss, optimizer and metrics; the optimizer state starts afresh.
    pub fn compile(&mut self, spec: &CompileSpec) -> Result<()> {
        let last = self.net.layers.last().expect("built").final_activation();
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
        self.compiled
            .as_ref()
            .ok_or_else(|| Error::InvalidState(format!("you must call compile() before {what}()")))
    }

    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// Values per target row the compiled loss expects.
    pub fn target_width(&self) -> Result<usize> {
        Ok(self
            .compiled("fit")?
            .loss
            .target_width(self.net.output_width()))
    }

    /// Checks shapes and values of a data set once, before any step runs.
    pub fn validate(&self, data: &Dataset<'_>, what: &str) -> Result<()> {
        let c = self.compiled(what)?;
        let (xw, tw) = (
            self.net.input_width(),
            c.loss.target_width(self.net.output_width()),
        );
        if data.rows == 0 {
            return Err(invalid(format!("{what}: x is empty (0 samples)")));
        }
        if data.x.len() != data.rows * xw {
            return Err(invalid(format!(
                "{what}: x must hold {xw} values per sample"
            )));
        }
        if data.y.len() != data.rows * tw {
            return Err(invalid(format!(
                "{what}: y must hold {tw} value(s) per sample for this loss; got {} values for {} samples",
                data.y.len(),
                data.rows
            )));
        }
        if let Some(i) = first_non_finite(data.x) {
            return Err(invalid(format!(
                "{what}: x contains NaN or Inf (sample {}, feature {})",
                i / xw,
                i % xw
            )));
        }
        c.loss.validate_targets(data.y, self.net.output_width())
    }

    /// Starts an epoch over `rows` samples: draws the sample order when shuffling.
    pub fn begin_epoch(&mut self, rows: usize, batch_size: usize, shuffle: bool) -> Result<()> {
        let c = self.compiled("fit")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let metrics = c.metrics.len();
        if shuffle {
            self.order.clear();
            self.order.extend(0..rows);
            self.shuffle_rng.shuffle(&mut self.order);
        }
        self.epoch = EpochState {
            batch_size: batch_size.min(rows.max(1)),
            shuffle,
            rows,
            step: 0,
            running: Running::new(metrics),
        };
        Ok(())
    }

    /// Steps of the current epoch; `steps_done() == steps_total()` when it is over.
    pub fn steps_total(&self) -> usize {
        self.epoch.rows.div_ceil(self.epoch.batch_size.max(1))
    }

    pub fn steps_done(&self) -> usize {
        self.epoch.step
    }

    /// Runs steps of the current epoch until it ends or `deadline` passes (at least one step).
    /// Returns `true` when the epoch is complete.
    pub fn train_steps(&mut self, data: &Dataset<'_>, deadline: Option<Instant>) -> Result<bool> {
        if data.rows != self.epoch.rows {
            return Err(invalid(
                "train_steps: data differs from the one the epoch began with",
            ));
        }
        let this = &mut *self;
        threads::install(move || this.train_steps_in_pool(data, deadline))
    }

    fn train_steps_in_pool(
        &mut self,
        data: &Dataset<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let c = self
            .compiled
            .as_mut()
            .ok_or_else(|| Error::InvalidState("you must call compile() before fit()".into()))?;
        let (xw, tw) = (
            self.net.input_width(),
            c.loss.target_width(self.net.output_width()),
        );
        let e = &mut self.epoch;
        let bs = e.batch_size;
        if e.shuffle {
            self.batch_x.resize(bs * xw, 0.0);
            self.batch_y.resize(bs * tw, 0.0);
        }
        while e.step * bs < e.rows {
            let lo = e.step * bs;
            let hi = (lo + bs).min(e.rows);
            let rows = hi - lo;
            let (x, y) = if e.shuffle {
                for (r, &src) in self.order[lo..hi].iter().enumerate() {
                    self.batch_x[r * xw..(r + 1) * xw]
                        .copy_from_slice(&data.x[src * xw..(src + 1) * xw]);
                    self.batch_y[r * tw..(r + 1) * tw]
                        .copy_from_slice(&data.y[src * tw..(src + 1) * tw]);
                }
                (&self.batch_x[..rows * xw], &self.batch_y[..rows * tw])
            } else {
                (&data.x[lo * xw..hi * xw], &data.y[lo * tw..hi * tw])
            };
            train_step(&mut self.net, &mut self.ws, c, x, y, rows, &mut e.running);
            e.step += 1;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(e.step * bs >= e.rows)
    }

    /// Loss and metrics of the current epoch so far.
    pub fn epoch_logs(&self) -> Logs {
        let metrics = self.compiled.as_ref().map_or(&[][..], |c| &c.metrics[..]);
        self.epoch.running.logs(metrics)
    }

    /// A whole epoch in one call (what Rust callers and tests use).
    pub fn fit_epoch(
        &mut self,
        data: &Dataset<'_>,
        batch_size: usize,
        shuffle: bool,
    ) -> Result<Logs> {
        self.validate(data, "fit")?;
        self.begin_epoch(data.rows, batch_size, shuffle)?;
        self.train_steps(data, None)?;
        Ok(self.epoch_logs())
    }

    /// One optimizer step on exactly this batch; returns its loss and metrics.
    pub fn train_on_batch(&mut self, data: &Dataset<'_>) -> Result<Logs> {
        self.validate(data, "train_on_batch")?;
        let this = &mut *self;
        threads::install(move || {
            let c = this.compiled.as_mut().expect("validated");
            let mut running = Running::new(c.metrics.len());
            train_step(
                &mut this.net,
                &mut this.ws,
                c,
                data.x,
                data.y,
                data.rows,
                &mut running,
            );
            Ok(running.logs(&c.metrics))
        })
    }

    /// Mean loss over `data` as one batch, with its gradient left in `self.net.params.grads`
    /// (no update). What gradient checks compare against finite differences.
    pub fn compute_gradients(&mut self, data: &Dataset<'_>) -> Result<f64> {
        self.validate(data, "compute_gradients")?;
        let this = &mut *self;
        threads::install(move || {
            let c = this.compiled.as_ref().expect("validated");
            let mut running = Running::new(c.metrics.len());
            forward_backward(
                &mut this.net,
                &mut this.ws,
                c,
                data.x,
                data.y,
                data.rows,
                &mut running,
            );
            Ok(running.loss_sum / data.rows as f64)
        })
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
            let (xw, ow) = (this.net.input_width(), this.net.output_width());
            let tw = c.loss.target_width(ow);
            let mut running = Running::new(c.metrics.len());
            for lo in (0..data.rows).step_by(batch_size) {
                let hi = (lo + batch_size).min(data.rows);
                let rows = hi - lo;
                let (x, y) = (&data.x[lo * xw..hi * xw], &data.y[lo * tw..hi * tw]);
                this.net.forward(&mut this.ws, x, rows);
                let out = this.ws.outputs.last().expect("built");
                running.loss_sum += c.loss.evaluate(out, y, rows, ow, c.fused, 1.0, None);
                running.samples += rows as f64;
                for (m, t) in c.metrics.iter().zip(running.tallies.iter_mut()) {
                    m.kind.update(t, out, y, rows, ow);
                }
            }
            Ok(running.logs(&c.metrics))
        })
    }

    /// Inference on `rows` samples of `x`, written row-major into `out`.
    pub fn predict(
        &mut self,
        x: &[f32],
        rows: usize,
        batch_size: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let (xw, ow) = (self.net.input_width(), self.net.output_width());
        if x.len() != rows * xw {
            return Err(invalid(format!(
                "predict: x must hold {xw} values per sample"
            )));
        }
        if out.len() != rows * ow {
            return Err(invalid("predict: output buffer has the wrong size"));
        }
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        if let Some(i) = first_non_finite(x) {
            return Err(invalid(format!(
                "predict: x contains NaN or Inf (sample {}, feature {})",
                i / xw,
                i % xw
            )));
        }
        let this = &mut *self;
        threads::install(move || {
            for lo in (0..rows).step_by(batch_size) {
                let hi = (lo + batch_size).min(rows);
                this.net
                    .forward(&mut this.ws, &x[lo * xw..hi * xw], hi - lo);
                let last = this.ws.outputs.last().expect("built");
                out[lo * ow..hi * ow].copy_from_slice(&last[..(hi - lo) * ow]);
            }
            Ok(())
        })
    }
}

/// Forward, loss, backward and update for one batch of `rows` samples.
fn train_step(
    net: &mut Network,
    ws: &mut Workspace,
    c: &mut Compiled,
    x: &[f32],
    y: &[f32],
    rows: usize,
    running: &mut Running,
) {
    forward_backward(net, ws, c, x, y, rows, running);
    c.optimizer.step(&mut net.params.values, &net.params.grads);
}

/// Forward, loss and backward: leaves the gradient of the batch-mean loss in `net.params.grads`.
fn forward_backward(
    net: &mut Network,
    ws: &mut Workspace,
    c: &Compiled,
    x: &[f32],
    y: &[f32],
    rows: usize,
    running: &mut Running,
) {
    let ow = net.output_width();
    net.forward(ws, x, rows);
    let last = ws.outputs.len() - 1;
    let (out, grad) = (&ws.outputs[last], &mut ws.grads[last]);
    running.loss_sum += c
        .loss
        .evaluate(out, y, rows, ow, c.fused, 1.0 / rows as f32, Some(grad));
    running.samples += rows as f64;
    for (m, t) in c.metrics.iter().zip(running.tallies.iter_mut()) {
        m.kind.update(t, out, y, rows, ow);
    }
    net.backward(ws, x, rows, c.fused);
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
    use crate::rng::Stream;

    fn dense(name: &str, units: usize, activation: Activation) -> LayerSpec {
        LayerSpec::Dense {
            name: name.into(),
            units,
            activation,
            use_bias: true,
            kernel_initializer: Default::default(),
            bias_initializer: crate::init::Initializer::GlorotUniform,
        }
    }

    fn model(layers: Vec<LayerSpec>, loss: Loss, input: usize) -> Model {
        let mut m = Model::new(
            &ModelSpec {
                input_shape: vec![input],
                layers,
            },
            3,
        )
        .unwrap();
        let optimizer = OptimizerSpec::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
        };
        m.compile(&CompileSpec {
            loss,
            optimizer,
            metrics: vec![],
        })
        .unwrap();
        m
    }

    fn random(n: usize, salt: u64) -> Vec<f32> {
        let mut s = Stream::new(99, salt);
        (0..n).map(|_| 2.0 * s.uniform() - 1.0).collect()
    }

    /// Every parameter's analytic gradient against a central difference of the batch loss.
    fn check_gradients(m: &mut Model, x: &[f32], y: &[f32], rows: usize) {
        let data = Dataset { x, y, rows };
        m.compute_gradients(&data).unwrap();
        let analytic = m.net.params.grads.clone();
        let h = 1e-2f32;
        for i in 0..m.net.params.len() {
            let orig = m.net.params.values[i];
            m.net.params.values[i] = orig + h;
            let up = m.compute_gradients(&data).unwrap();
            m.net.params.values[i] = orig - h;
            let down = m.compute_gradients(&data).unwrap();
            m.net.params.values[i] = orig;
            let numeric = (up - down) / (2.0 * h as f64);
            let a = analytic[i] as f64;
            let err = (numeric - a).abs() / (1e-2 + numeric.abs() + a.abs());
            assert!(err < 2e-2, "param {i}: numeric {numeric} analytic {a}");
        }
    }

    #[test]
    fn dense_gradients_for_every_activation_and_loss() {
        let acts = [
            Activation::Linear,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
        ];
        let rows = 5;
        let x = random(rows * 4, 1);
        let onehot: Vec<f32> = (0..rows)
            .flat_map(|i| (0..3).map(move |j| (j == i % 3) as u8 as f32))
            .collect();
        let labels: Vec<f32> = (0..rows).map(|i| (i % 3) as f32).collect();
        let regress = random(rows * 3, 2);
        for hidden in acts {
            let cases: Vec<(Activation, Loss, &[f32])> = vec![
                (Activation::Linear, Loss::MeanSquaredError, &regress),
                (Activation::Tanh, Loss::MeanSquaredError, &regress),
                (
                    Activation::Softmax,
                    Loss::CategoricalCrossentropy { from_logits: false },
                    &onehot,
                ),
                (
                    Activation::Sigmoid,
                    Loss::CategoricalCrossentropy { from_logits: false },
                    &onehot,
                ),
                (
                    Activation::Linear,
                    Loss::CategoricalCrossentropy { from_logits: true },
                    &onehot,
                ),
                (
                    Activation::Softmax,
                    Loss::SparseCategoricalCrossentropy { from_logits: false },
                    &labels,
                ),
                (
                    Activation::Linear,
                    Loss::SparseCategoricalCrossentropy { from_logits: true },
                    &labels,
                ),
            ];
            for (out_act, loss, y) in cases {
                let mut m = model(vec![dense("a", 6, hidden), dense("b", 3, out_act)], loss, 4);
                check_gradients(&mut m, &x, y, rows);
            }
        }
    }

    #[test]
    fn standalone_activation_layer_fuses_like_a_dense_activation() {
        let rows = 4;
        let x = random(rows * 4, 3);
        let labels: Vec<f32> = (0..rows).map(|i| (i % 3) as f32).collect();
        let layers = vec![
            dense("a", 5, Activation::Relu),
            dense("b", 3, Activation::Linear),
            LayerSpec::Activation {
                name: "s".into(),
                activation: Activation::Softmax,
            },
        ];
        let mut m = model(
            layers.clone(),
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            4,
        );
        check_gradients(&mut m, &x, &labels, rows);
        let layers = vec![
            layers[0].clone(),
            LayerSpec::Activation {
                name: "t".into(),
                activation: Activation::Tanh,
            },
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
                vec![
                    dense("a", 8, Activation::Relu),
                    dense("b", 3, Activation::Softmax),
                ],
                Loss::SparseCategoricalCrossentropy { from_logits: false },
                4,
            );
            for _ in 0..3 {
                m.fit_epoch(
                    &Dataset {
                        x: &x,
                        y: &labels,
                        rows,
                    },
                    8,
                    true,
                )
                .unwrap();
            }
            m.net.params.values.clone()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn training_reduces_the_loss_on_a_separable_problem() {
        let rows = 200;
        let x = random(rows * 2, 6);
        let labels: Vec<f32> = x
            .chunks(2)
            .map(|p| (p[0] + p[1] > 0.0) as u8 as f32)
            .collect();
        let mut m = model(
            vec![
                dense("a", 8, Activation::Tanh),
                dense("b", 2, Activation::Softmax),
            ],
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            2,
        );
        let data = Dataset {
            x: &x,
            y: &labels,
            rows,
        };
        let first = m.fit_epoch(&data, 16, true).unwrap().get("loss").unwrap();
        let mut last = first;
        for _ in 0..30 {
            last = m.fit_epoch(&data, 16, true).unwrap().get("loss").unwrap();
        }
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut m = model(
            vec![dense("a", 3, Activation::Softmax)],
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            2,
        );
        let x = [0.0, 1.0, f32::NAN, 0.0];
        assert!(m
            .fit_epoch(
                &Dataset {
                    x: &x,
                    y: &[0.0, 1.0],
                    rows: 2
                },
                1,
                false
            )
            .is_err());
        let x = [0.0, 1.0, 1.0, 0.0];
        assert!(m
            .fit_epoch(
                &Dataset {
                    x: &x,
                    y: &[0.0, 3.0],
                    rows: 2
                },
                1,
                false
            )
            .is_err());
        assert!(m
            .fit_epoch(
                &Dataset {
                    x: &x[..3],
                    y: &[0.0, 1.0],
                    rows: 2
                },
                1,
                false
            )
            .is_err());
        assert!(m
            .fit_epoch(
                &Dataset {
                    x: &x,
                    y: &[0.0, 1.0],
                    rows: 2
                },
                0,
                false
            )
            .is_err());
        let mut uncompiled = Model::new(
            &ModelSpec {
                input_shape: vec![2],
                layers: vec![dense("a", 1, Activation::Linear)],
            },
            0,
        )
        .unwrap();
        assert!(matches!(
            uncompiled.fit_epoch(
                &Dataset {
                    x: &x,
                    y: &[0.0, 1.0],
                    rows: 2
                },
                1,
                false
            ),
            Err(Error::InvalidState(_))
        ));
    }
}
