//! Streaming metrics: each keeps running sums over the batches of an epoch, so the value is exact
//! for the whole epoch (Keras' semantics), not a mean of per-batch values.
//!
//! Definitions (Keras):
//! - binary accuracy: `(pred > t) == (y > t)` over every output value (t = 0.5)
//! - categorical / sparse categorical accuracy: `argmax(pred) == argmax(y)` / `== y`
//! - top-k categorical accuracy: the true class is among the `k` largest predictions
//! - mse / mae: mean squared / absolute error over every output value
//! - precision `TP / (TP + FP)`, recall `TP / (TP + FN)` with `pred > threshold`, `y != 0`
//! - AUC: ROC area by the trapezoid rule over `num_thresholds` evenly spaced thresholds
//!   (`-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps`), predictions counted at `pred > t`.

use serde::{Deserialize, Serialize};

/// What a metric computes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricKind {
    BinaryAccuracy {
        #[serde(default = "half")]
        threshold: f32,
    },
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy {
        #[serde(default = "five")]
        k: usize,
    },
    SparseTopKCategoricalAccuracy {
        #[serde(default = "five")]
        k: usize,
    },
    MeanSquaredError,
    MeanAbsoluteError,
    Precision {
        #[serde(default = "half")]
        threshold: f32,
    },
    Recall {
        #[serde(default = "half")]
        threshold: f32,
    },
    Auc {
        #[serde(default = "two_hundred")]
        num_thresholds: usize,
    },
}

fn half() -> f32 {
    0.5
}
fn five() -> usize {
    5
}
fn two_hundred() -> usize {
    200
}

/// A metric with the name it is reported under (e.g. `accuracy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: MetricKind,
}

/// Running sums of a metric.
#[derive(Clone, Debug)]
pub enum Tally {
    Mean {
        total: f64,
        count: f64,
    },
    Confusion {
        tp: f64,
        fp: f64,
        fn_: f64,
    },
    /// Per threshold bucket: how many positives / negatives exceed exactly that many thresholds.
    Histogram {
        pos: Vec<f64>,
        neg: Vec<f64>,
    },
}

/// Index of the largest value; the first one on ties (as numpy and Keras do).
#[inline]
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Whether class `c` is among the `k` largest values of `row` (ties count in its favour).
#[inline]
fn in_top_k(row: &[f32], c: usize, k: usize) -> bool {
    let v = row[c];
    row.iter().filter(|&&p| p > v).count() < k
}

impl MetricKind {
    /// Whether the metric reads integer class labels (one per sample) rather than dense targets.
    pub fn sparse_targets(&self) -> bool {
        matches!(self, MetricKind::SparseCategoricalAccuracy | MetricKind::SparseTopKCategoricalAccuracy { .. })
    }

    /// Fresh running sums.
    pub fn tally(&self) -> Tally {
        match *self {
            MetricKind::Precision { .. } | MetricKind::Recall { .. } => Tally::Confusion { tp: 0.0, fp: 0.0, fn_: 0.0 },
            MetricKind::Auc { num_thresholds } => {
                Tally::Histogram { pos: vec![0.0; num_thresholds + 1], neg: vec![0.0; num_thresholds + 1] }
            }
            _ => Tally::Mean { total: 0.0, count: 0.0 },
        }
    }

    /// Adds a batch of `rows` predictions (each `cols` wide) and their targets.
    pub fn update(&self, tally: &mut Tally, pred: &[f32], y: &[f32], rows: usize, cols: usize) {
        let n = rows * cols;
        let (pred, all_y) = (&pred[..n], y);
        match (self, tally) {
            (
                MetricKind::Precision { threshold } | MetricKind::Recall { threshold },
                Tally::Confusion { tp, fp, fn_ },
            ) => {
                for (&p, &t) in pred.iter().zip(&all_y[..n]) {
                    match (p > *threshold, t != 0.0) {
                        (true, true) => *tp += 1.0,
                        (true, false) => *fp += 1.0,
                        (false, true) => *fn_ += 1.0,
                        (false, false) => {}
                    }
                }
            }
            (MetricKind::Auc { num_thresholds }, Tally::Histogram { pos, neg }) => {
                let inner = (*num_thresholds - 1) as f64;
                for (&p, &t) in pred.iter().zip(&all_y[..n]) {
                    let p = (p as f64).clamp(0.0, 1.0);
                    // Thresholds below p: -eps always, plus i/(n-1) < p for i in 1..=n-2.
                    let below = 1 + ((p * inner).ceil() as i64 - 1).clamp(0, *num_thresholds as i64 - 2) as usize;
                    if t != 0.0 {
                        pos[below] += 1.0
                    } else {
                        neg[below] += 1.0
                    }
                }
            }
            (kind, Tally::Mean { total, count }) => {
                let (hits, of) = kind.mean_terms(pred, all_y, rows, cols);
                *total += hits;
                *count += of;
            }
            _ => unreachable!("tally built by this metric"),
        }
    }

    /// Numerator and denominator of the mean-type metrics for one batch.
    fn mean_terms(&self, pred: &[f32], y: &[f32], rows: usize, cols: usize) -> (f64, f64) {
        let row = |i: usize| &pred[i * cols..(i + 1) * cols];
        let count = |f: &dyn Fn(usize) -> bool| (0..rows).filter(|&i| f(i)).count() as f64;
        match *self {
            MetricKind::BinaryAccuracy { threshold } => {
                let hits =
                    pred.iter().zip(&y[..rows * cols]).filter(|(&p, &t)| (p > threshold) == (t > threshold)).count();
                (hits as f64, (rows * cols) as f64)
            }
            MetricKind::CategoricalAccuracy => {
                (count(&|i| argmax(row(i)) == argmax(&y[i * cols..(i + 1) * cols])), rows as f64)
            }
            MetricKind::SparseCategoricalAccuracy => (count(&|i| argmax(row(i)) as f32 == y[i]), rows as f64),
            MetricKind::TopKCategoricalAccuracy { k } => {
                (count(&|i| in_top_k(row(i), argmax(&y[i * cols..(i + 1) * cols]), k)), rows as f64)
            }
            MetricKind::SparseTopKCategoricalAccuracy { k } => {
                (count(&|i| in_top_k(row(i), y[i] as usize, k)), rows as f64)
            }
            MetricKind::MeanSquaredError => {
                let s: f64 = pred.iter().zip(y).map(|(&p, &t)| ((p - t) as f64).powi(2)).sum();
                (s, (rows * cols) as f64)
            }
            MetricKind::MeanAbsoluteError => {
                let s: f64 = pred.iter().zip(y).map(|(&p, &t)| ((p - t) as f64).abs()).sum();
                (s, (rows * cols) as f64)
            }
            MetricKind::Precision { .. } | MetricKind::Recall { .. } | MetricKind::Auc { .. } => {
                unreachable!("not a mean")
            }
        }
    }

    /// The metric's value from its running sums.
    pub fn result(&self, tally: &Tally) -> f64 {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        match (self, tally) {
            (_, Tally::Mean { total, count }) => ratio(*total, *count),
            (MetricKind::Precision { .. }, Tally::Confusion { tp, fp, .. }) => ratio(*tp, tp + fp),
            (_, Tally::Confusion { tp, fn_, .. }) => ratio(*tp, tp + fn_),
            (_, Tally::Histogram { pos, neg }) => {
                let (p_all, n_all): (f64, f64) = (pos.iter().sum(), neg.iter().sum());
                // Counts above threshold i: samples that exceed more than i thresholds.
                let nt = pos.len() - 1;
                let (mut tp, mut fp) = (p_all, n_all);
                let mut prev = (ratio(tp, p_all), ratio(fp, n_all));
                let mut auc = 0.0;
                for i in 1..nt {
                    tp -= pos[i];
                    fp -= neg[i];
                    let cur = (ratio(tp, p_all), ratio(fp, n_all));
                    auc += (prev.1 - cur.1) * (prev.0 + cur.0) / 2.0;
                    prev = cur;
                }
                auc
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(kind: MetricKind, pred: &[f32], y: &[f32], rows: usize, cols: usize) -> f64 {
        let mut t = kind.tally();
        kind.update(&mut t, pred, y, rows, cols);
        kind.result(&t)
    }

    #[test]
    fn accuracies_count_hits() {
        let pred = [0.1, 0.9, 0.8, 0.2, 0.3, 0.7];
        assert!((eval(MetricKind::SparseCategoricalAccuracy, &pred, &[1.0, 1.0, 1.0], 3, 2) - 2.0 / 3.0).abs() < 1e-12);
        let onehot = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
        assert!((eval(MetricKind::CategoricalAccuracy, &pred, &onehot, 3, 2) - 2.0 / 3.0).abs() < 1e-12);
        let b = eval(MetricKind::BinaryAccuracy { threshold: 0.5 }, &[0.2, 0.6, 0.7], &[0.0, 0.0, 1.0], 3, 1);
        assert!((b - 2.0 / 3.0).abs() < 1e-12);
        let top = eval(
            MetricKind::SparseTopKCategoricalAccuracy { k: 2 },
            &[0.1, 0.5, 0.4, 0.6, 0.3, 0.1],
            &[2.0, 2.0],
            2,
            3,
        );
        assert!((top - 0.5).abs() < 1e-12);
    }

    #[test]
    fn precision_recall_and_auc() {
        let pred = [0.9, 0.8, 0.3, 0.6, 0.1];
        let y = [1.0, 0.0, 1.0, 1.0, 0.0];
        assert!((eval(MetricKind::Precision { threshold: 0.5 }, &pred, &y, 5, 1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((eval(MetricKind::Recall { threshold: 0.5 }, &pred, &y, 5, 1) - 2.0 / 3.0).abs() < 1e-12);
        // Exact ROC AUC: of the 6 positive/negative pairs, 4 are ordered correctly.
        let auc = eval(MetricKind::Auc { num_thresholds: 1000 }, &pred, &y, 5, 1);
        assert!((auc - 4.0 / 6.0).abs() < 1e-3, "{auc}");
        let perfect = eval(MetricKind::Auc { num_thresholds: 200 }, &[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0], 4, 1);
        assert!((perfect - 1.0).abs() < 1e-12);
    }
}
