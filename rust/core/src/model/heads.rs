//! What `compile` chose for each model output ("head"): its loss, the loss's weight in the total,
//! and its metrics; and the running sums of one pass over data with the Keras log names.
//!
//! The objective is `L = sum_k w_k L_k + penalties`, with `L_k = sum_i s_ik l_ik / batch` the
//! sample-weighted mean loss of output `k` (Keras' reduction). Logs report `loss` = `L`, and,
//! when several outputs have a loss, each unweighted `L_k` as `<output>_loss`; metrics are
//! named `<output>_<metric>` when the model has several outputs.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::loss::Loss;
use crate::metric::{MetricSpec, Tally};
use crate::optim::OptimizerSpec;

use super::trainer::Trainer;

fn one() -> f32 {
    1.0
}

/// The loss and metrics of one output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// The output's name (its layer's name), used in log keys.
    #[serde(default)]
    pub name: String,
    /// `None`: the output is computed but not trained (Keras' `loss=None` for an output).
    pub loss: Option<Loss>,
    #[serde(default = "one")]
    pub weight: f32,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
}

/// What `compile` chose: one head per model output, in output order, and the optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileSpec {
    pub heads: Vec<HeadSpec>,
    pub optimizer: OptimizerSpec,
}

impl CompileSpec {
    /// One output with one loss (every `Sequential` model).
    pub fn single(loss: Loss, optimizer: OptimizerSpec, metrics: Vec<MetricSpec>) -> Self {
        Self { heads: vec![HeadSpec { name: String::new(), loss: Some(loss), weight: 1.0, metrics }], optimizer }
    }
}

/// Named scalar results (`loss` first, then per-output losses and the metrics).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs(pub Vec<(String, f64)>);

impl Logs {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

/// A compiled head: its spec plus whether the loss absorbs the output's last activation
/// (softmax + cross entropy, sigmoid + BCE, whose gradient is then `a - y`).
#[derive(Clone, Debug)]
pub struct Head {
    pub spec: HeadSpec,
    pub fused: bool,
}

impl Head {
    /// Values per target row this head expects (0 without a loss).
    pub fn target_width(&self, out_width: usize) -> usize {
        self.spec.loss.map_or(0, |l| l.target_width(out_width))
    }
}

pub struct Compiled {
    pub heads: Vec<Head>,
    pub trainer: Trainer,
    /// Per graph node: backward starts from `dL/dz` of its last activation (a fused head).
    pub fused_nodes: Vec<bool>,
    /// Whether several outputs have a loss (then `<output>_loss` is logged) and whether the
    /// model has several outputs (then metric names are prefixed with the output's).
    pub many_losses: bool,
    pub many_outputs: bool,
}

impl Compiled {
    pub fn validate_heads(heads: &[HeadSpec], outputs: usize) -> Result<()> {
        if heads.len() != outputs {
            return Err(invalid(format!(
                "compile: the model has {outputs} output(s); got {} loss entries",
                heads.len()
            )));
        }
        if heads.iter().all(|h| h.loss.is_none()) {
            return Err(invalid("compile: every output's loss is None; at least one output must have a loss"));
        }
        for h in heads {
            if let Some(l) = h.loss {
                l.validate()?;
            }
            if !(h.weight.is_finite() && h.weight >= 0.0) {
                return Err(invalid(format!("compile: loss weight of '{}' must be finite and >= 0", h.name)));
            }
        }
        Ok(())
    }
}

/// Running sums of one pass over data.
#[derive(Clone, Debug, Default)]
pub struct Running {
    /// Sum over samples of the weighted total loss (penalty included).
    pub loss_sum: f64,
    pub samples: f64,
    /// Per head, the sum of its unweighted loss.
    pub head_sums: Vec<f64>,
    /// Per head, per metric.
    pub tallies: Vec<Vec<Tally>>,
}

impl Running {
    pub fn new(heads: &[Head]) -> Self {
        Self {
            loss_sum: 0.0,
            samples: 0.0,
            head_sums: vec![0.0; heads.len()],
            tallies: heads.iter().map(|h| h.spec.metrics.iter().map(|m| m.kind.tally()).collect()).collect(),
        }
    }

    /// Adds one head's batch: its loss summed over the batch's samples (unweighted by the head
    /// weight) and its metric counts.
    pub fn add_head(&mut self, k: usize, head: &Head, loss_sum: f64, out: &[f32], y: &[f32], rows: usize, ow: usize) {
        self.head_sums[k] += loss_sum;
        self.loss_sum += head.spec.weight as f64 * loss_sum;
        for (m, t) in head.spec.metrics.iter().zip(self.tallies[k].iter_mut()) {
            m.kind.update(t, out, y, rows, ow);
        }
    }

    /// Ends one batch: its sample count and the regularization penalty (added to the total
    /// loss once per sample, as Keras reports it).
    pub fn end_batch(&mut self, rows: usize, penalty: f64) {
        self.loss_sum += penalty * rows as f64;
        self.samples += rows as f64;
    }

    /// The mean total loss so far.
    pub fn mean_loss(&self) -> f64 {
        if self.samples > 0.0 {
            self.loss_sum / self.samples
        } else {
            0.0
        }
    }

    pub fn logs(&self, c: &Compiled) -> Logs {
        let mean = |s: f64| if self.samples > 0.0 { s / self.samples } else { 0.0 };
        let mut v = vec![("loss".to_string(), self.mean_loss())];
        if c.many_losses {
            for (h, &s) in c.heads.iter().zip(&self.head_sums) {
                if h.spec.loss.is_some() {
                    v.push((format!("{}_loss", h.spec.name), mean(s)));
                }
            }
        }
        for (h, tallies) in c.heads.iter().zip(&self.tallies) {
            for (m, t) in h.spec.metrics.iter().zip(tallies) {
                let name = if c.many_outputs { format!("{}_{}", h.spec.name, m.name) } else { m.name.clone() };
                v.push((name, m.kind.result(t)));
            }
        }
        Logs(v)
    }
}
