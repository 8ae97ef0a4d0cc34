//! Streaming metrics: each keeps a running total over the batches of an epoch, so the value is
//! exact for the whole epoch (Keras' semantics), not a mean of per-batch means.

use serde::{Deserialize, Serialize};

/// What a metric computes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricKind {
    /// `pred > threshold` equals `y > threshold` (`y` is 0/1), averaged over every output value.
    BinaryAccuracy {
        #[serde(default = "half")]
        threshold: f32,
    },
    /// `argmax(pred) == argmax(y)`.
    CategoricalAccuracy,
    /// `argmax(pred) == y` with integer labels.
    SparseCategoricalAccuracy,
}

fn half() -> f32 {
    0.5
}

/// A metric with the name it is reported under (e.g. `accuracy` or `val_accuracy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: MetricKind,
}

/// Running numerator and denominator of a metric.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub total: f64,
    pub count: f64,
}

impl Tally {
    pub fn result(&self) -> f64 {
        if self.count > 0.0 {
            self.total / self.count
        } else {
            0.0
        }
    }
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

impl MetricKind {
    /// Adds a batch of `rows` predictions (each `cols` wide) and their targets to `tally`.
    pub fn update(&self, tally: &mut Tally, pred: &[f32], y: &[f32], rows: usize, cols: usize) {
        match *self {
            MetricKind::BinaryAccuracy { threshold } => {
                let hits = pred[..rows * cols]
                    .iter()
                    .zip(&y[..rows * cols])
                    .filter(|(&p, &t)| (p > threshold) == (t > threshold))
                    .count();
                tally.total += hits as f64;
                tally.count += (rows * cols) as f64;
            }
            MetricKind::CategoricalAccuracy => {
                let hits = (0..rows)
                    .filter(|&i| {
                        argmax(&pred[i * cols..(i + 1) * cols])
                            == argmax(&y[i * cols..(i + 1) * cols])
                    })
                    .count();
                tally.total += hits as f64;
                tally.count += rows as f64;
            }
            MetricKind::SparseCategoricalAccuracy => {
                let hits = (0..rows)
                    .filter(|&i| argmax(&pred[i * cols..(i + 1) * cols]) as f32 == y[i])
                    .count();
                tally.total += hits as f64;
                tally.count += rows as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracies_count_hits() {
        let pred = [0.1, 0.9, 0.8, 0.2, 0.3, 0.7];
        let mut t = Tally::default();
        MetricKind::SparseCategoricalAccuracy.update(&mut t, &pred, &[1.0, 1.0, 1.0], 3, 2);
        assert!((t.result() - 2.0 / 3.0).abs() < 1e-12);
        let mut t = Tally::default();
        MetricKind::CategoricalAccuracy.update(
            &mut t,
            &pred,
            &[0.0, 1.0, 1.0, 0.0, 1.0, 0.0],
            3,
            2,
        );
        assert!((t.result() - 2.0 / 3.0).abs() < 1e-12);
        let mut t = Tally::default();
        MetricKind::BinaryAccuracy { threshold: 0.5 }.update(
            &mut t,
            &[0.2, 0.6, 0.7],
            &[0.0, 0.0, 1.0],
            3,
            1,
        );
        assert!((t.result() - 2.0 / 3.0).abs() < 1e-12);
    }
}
