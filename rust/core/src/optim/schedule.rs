//! Learning-rate schedules, evaluated per step inside the engine (note 004 "Learning rate
//! schedules", note 002 §4.5 warm-up). `step` is the number of updates already taken (Keras'
//! `optimizer.iterations`), starting at 0.
//!
//! - exponential: `lr0 * rate^(step / decay_steps)` (floored exponent with `staircase`)
//! - piecewise constant: `values[i]` while `step <= boundaries[i]`, then the last value
//! - polynomial: `(lr0 - end) (1 - step / decay_steps)^power + end` (cycling the horizon with
//!   `cycle`)
//! - cosine: `lr0 ((1 - alpha) (1 + cos(pi t)) / 2 + alpha)`, `t = step / decay_steps` capped at 1,
//!   after an optional linear warm-up from `lr0` to `warmup_target` over `warmup_steps`
//!   (the decay then starts from `warmup_target`)
//! - cosine with warm restarts (SGDR): periods `first_decay_steps * t_mul^k`, peak scaled by
//!   `m_mul^k`
//! - cyclical (triangular, Smith 2017): from `initial` up to `maximal` and back every
//!   `2 step_size` steps
//! - linear warm-up (note 002 §4.5): in epoch `i = 1..n` of an `n`-epoch warm-up the rate is
//!   `i lr / n`, with `lr` the wrapped schedule's initial rate; afterwards the wrapped schedule,
//!   restarted at step 0

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Schedule {
    ExponentialDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        decay_rate: f64,
        #[serde(default)]
        staircase: bool,
    },
    PiecewiseConstantDecay {
        boundaries: Vec<f64>,
        values: Vec<f64>,
    },
    PolynomialDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        #[serde(default = "end_lr")]
        end_learning_rate: f64,
        #[serde(default = "one")]
        power: f64,
        #[serde(default)]
        cycle: bool,
    },
    CosineDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        #[serde(default)]
        alpha: f64,
        #[serde(default)]
        warmup_target: Option<f64>,
        #[serde(default)]
        warmup_steps: f64,
    },
    CosineDecayRestarts {
        initial_learning_rate: f64,
        first_decay_steps: f64,
        #[serde(default = "two")]
        t_mul: f64,
        #[serde(default = "one")]
        m_mul: f64,
        #[serde(default)]
        alpha: f64,
    },
    CyclicalLearningRate {
        initial_learning_rate: f64,
        maximal_learning_rate: f64,
        step_size: f64,
    },
    LinearWarmup {
        warmup_epochs: u64,
        after: Box<LearningRate>,
    },
}

fn end_lr() -> f64 {
    1e-4
}
fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

/// A fixed rate or a schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LearningRate {
    Constant(f64),
    Schedule(Schedule),
}

impl LearningRate {
    /// The rate for update number `step` (0-based); `steps_per_epoch` is needed by epoch-based
    /// warm-up only.
    pub fn at(&self, step: u64, steps_per_epoch: u64) -> f64 {
        match self {
            LearningRate::Constant(lr) => *lr,
            LearningRate::Schedule(s) => s.at(step, steps_per_epoch),
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            LearningRate::Constant(lr) if !(lr.is_finite() && *lr >= 0.0) => {
                Err(invalid(format!("learning_rate must be a finite non-negative number; got {lr}")))
            }
            LearningRate::Constant(_) => Ok(()),
            LearningRate::Schedule(s) => s.validate(),
        }
    }
}

impl Schedule {
    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(format!("schedule: {what} must be positive; got {v}")))
            }
        };
        match self {
            Schedule::ExponentialDecay { decay_steps, .. } | Schedule::PolynomialDecay { decay_steps, .. } => {
                positive("decay_steps", *decay_steps)
            }
            Schedule::CosineDecay { decay_steps, .. } => positive("decay_steps", *decay_steps),
            Schedule::CosineDecayRestarts { first_decay_steps, t_mul, .. } => {
                positive("first_decay_steps", *first_decay_steps)?;
                positive("t_mul", *t_mul)
            }
            Schedule::CyclicalLearningRate { step_size, .. } => positive("step_size", *step_size),
            Schedule::PiecewiseConstantDecay { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(invalid("PiecewiseConstantDecay: values must have one more entry than boundaries"));
                }
                if boundaries.windows(2).any(|w| w[0] > w[1]) {
                    return Err(invalid("PiecewiseConstantDecay: boundaries must be increasing"));
                }
                Ok(())
            }
            Schedule::LinearWarmup { warmup_epochs, after } => {
                if *warmup_epochs == 0 {
                    return Err(invalid("LinearWarmup: warmup_epochs must be at least 1"));
                }
                after.validate()
            }
        }
    }

    pub fn at(&self, step: u64, steps_per_epoch: u64) -> f64 {
        let s = step as f64;
        match *self {
            Schedule::ExponentialDecay { initial_learning_rate, decay_steps, decay_rate, staircase } => {
                let p = s / decay_steps;
                initial_learning_rate * decay_rate.powf(if staircase { p.floor() } else { p })
            }
            Schedule::PiecewiseConstantDecay { ref boundaries, ref values } => {
                let i = boundaries.iter().position(|&b| s <= b).unwrap_or(boundaries.len());
                values[i]
            }
            Schedule::PolynomialDecay { initial_learning_rate, decay_steps, end_learning_rate, power, cycle } => {
                let (s, horizon) = if cycle {
                    let mult = if s == 0.0 { 1.0 } else { (s / decay_steps).ceil() };
                    (s, decay_steps * mult)
                } else {
                    (s.min(decay_steps), decay_steps)
                };
                (initial_learning_rate - end_learning_rate) * (1.0 - s / horizon).powf(power) + end_learning_rate
            }
            Schedule::CosineDecay { initial_learning_rate, decay_steps, alpha, warmup_target, warmup_steps } => {
                let peak = match warmup_target {
                    Some(target) if s < warmup_steps => {
                        return initial_learning_rate + (target - initial_learning_rate) * s / warmup_steps;
                    }
                    Some(target) => target,
                    None => initial_learning_rate,
                };
                let t = ((s - if warmup_target.is_some() { warmup_steps } else { 0.0 }) / decay_steps).min(1.0);
                peak * ((1.0 - alpha) * 0.5 * (1.0 + (PI * t).cos()) + alpha)
            }
            Schedule::CosineDecayRestarts { initial_learning_rate, first_decay_steps, t_mul, m_mul, alpha } => {
                let mut frac = s / first_decay_steps;
                let (k, within) = if t_mul == 1.0 {
                    let k = frac.floor();
                    (k, frac - k)
                } else {
                    let k = ((1.0 - frac * (1.0 - t_mul)).ln() / t_mul.ln()).floor();
                    let start = (1.0 - t_mul.powf(k)) / (1.0 - t_mul);
                    frac = (frac - start) / t_mul.powf(k);
                    (k, frac)
                };
                let peak = initial_learning_rate * m_mul.powf(k);
                peak * ((1.0 - alpha) * 0.5 * (1.0 + (PI * within).cos()) + alpha)
            }
            Schedule::CyclicalLearningRate { initial_learning_rate, maximal_learning_rate, step_size } => {
                let cycle = (1.0 + s / (2.0 * step_size)).floor();
                let x = (s / step_size - 2.0 * cycle + 1.0).abs();
                initial_learning_rate + (maximal_learning_rate - initial_learning_rate) * (1.0 - x).max(0.0)
            }
            Schedule::LinearWarmup { warmup_epochs, ref after } => {
                let per_epoch = steps_per_epoch.max(1);
                let warm_steps = warmup_epochs * per_epoch;
                if step < warm_steps {
                    let epoch = step / per_epoch + 1;
                    after.at(0, per_epoch) * epoch as f64 / warmup_epochs as f64
                } else {
                    after.at(step - warm_steps, per_epoch)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }

    #[test]
    fn values_at_chosen_steps() {
        let e = Schedule::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 10.0,
            decay_rate: 0.5,
            staircase: false,
        };
        close(e.at(0, 1), 0.1);
        close(e.at(10, 1), 0.05);
        close(e.at(5, 1), 0.1 * 0.5f64.sqrt());
        let e = Schedule::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 10.0,
            decay_rate: 0.5,
            staircase: true,
        };
        close(e.at(19, 1), 0.05);
        let p = Schedule::PiecewiseConstantDecay { boundaries: vec![10.0, 20.0], values: vec![1.0, 0.5, 0.1] };
        close(p.at(10, 1), 1.0);
        close(p.at(11, 1), 0.5);
        close(p.at(21, 1), 0.1);
        let poly = Schedule::PolynomialDecay {
            initial_learning_rate: 1.0,
            decay_steps: 10.0,
            end_learning_rate: 0.0,
            power: 2.0,
            cycle: false,
        };
        close(poly.at(5, 1), 0.25);
        close(poly.at(50, 1), 0.0);
        let c = Schedule::CosineDecay {
            initial_learning_rate: 1.0,
            decay_steps: 10.0,
            alpha: 0.1,
            warmup_target: None,
            warmup_steps: 0.0,
        };
        close(c.at(0, 1), 1.0);
        close(c.at(5, 1), 0.55);
        close(c.at(10, 1), 0.1);
        let w = Schedule::CosineDecay {
            initial_learning_rate: 0.0,
            decay_steps: 10.0,
            alpha: 0.0,
            warmup_target: Some(1.0),
            warmup_steps: 4.0,
        };
        close(w.at(2, 1), 0.5);
        close(w.at(4, 1), 1.0);
        close(w.at(9, 1), 0.5);
        let r = Schedule::CosineDecayRestarts {
            initial_learning_rate: 1.0,
            first_decay_steps: 10.0,
            t_mul: 2.0,
            m_mul: 0.5,
            alpha: 0.0,
        };
        close(r.at(5, 1), 0.5);
        close(r.at(10, 1), 0.5); // restart: second period has peak 0.5 and length 20
        close(r.at(20, 1), 0.25);
        let cyc =
            Schedule::CyclicalLearningRate { initial_learning_rate: 0.1, maximal_learning_rate: 1.0, step_size: 4.0 };
        close(cyc.at(0, 1), 0.1);
        close(cyc.at(2, 1), 0.55);
        close(cyc.at(4, 1), 1.0);
        close(cyc.at(8, 1), 0.1);
    }

    #[test]
    fn linear_warmup_follows_note_002() {
        // n = 4 epochs of 3 steps, then a constant 0.2.
        let s = Schedule::LinearWarmup { warmup_epochs: 4, after: Box::new(LearningRate::Constant(0.2)) };
        let per_epoch: Vec<f64> = (0..5).map(|e| s.at(e * 3 + 1, 3)).collect();
        for (got, want) in per_epoch.iter().zip([0.05, 0.1, 0.15, 0.2, 0.2]) {
            close(*got, want);
        }
    }
}
