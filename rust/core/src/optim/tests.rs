//! Every rule over several steps on a fixed quadratic `f(w) = 1/2 sum_i a_i w_i^2` (gradient
//! `a_i w_i`), against its published update written out again here in f64; plus decoupled weight
//! decay, clipping and schedules inside the optimizer.

use super::*;
use crate::params::{ParamStore, Role};

const A: [f64; 4] = [1.0, 4.0, 0.25, 2.0];
const W0: [f64; 4] = [1.0, -0.5, 2.0, -1.5];
const STEPS: usize = 6;

/// Runs `spec` for `STEPS` steps; `reference(w, g, t)` updates the f64 copy (t is 1-based).
fn compare(spec: OptimizerSpec, mut reference: impl FnMut(&mut [f64; 4], [f64; 4], u64)) {
    let mut store = ParamStore::default();
    store.register("k".into(), vec![3], Role::Kernel);
    store.register("b".into(), vec![1], Role::Bias);
    let mut opt = Optimizer::new(&spec, 4).unwrap();
    let mut w: Vec<f32> = W0.iter().map(|&v| v as f32).collect();
    let mut want = W0;
    for t in 1..=STEPS as u64 {
        let mut g: Vec<f32> = (0..4).map(|i| (A[i] * w[i] as f64) as f32).collect();
        let gr: [f64; 4] = std::array::from_fn(|i| A[i] * want[i]);
        opt.step(&mut w, &mut g, &store.tensors);
        reference(&mut want, gr, t);
    }
    for i in 0..4 {
        assert!((w[i] as f64 - want[i]).abs() < 2e-5 * (1.0 + want[i].abs()), "{:?}: {w:?} vs {want:?}", spec.rule);
    }
    assert_eq!(opt.iterations, STEPS as u64);
}

#[test]
fn sgd_plain_momentum_and_nesterov() {
    let lr = 0.1;
    compare(OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, lr), |w, g, _| {
        (0..4).for_each(|i| w[i] -= lr * g[i])
    });
    for nesterov in [false, true] {
        let mut v = [0.0f64; 4];
        compare(OptimizerSpec::new(Rule::Sgd { momentum: 0.9, nesterov }, lr), move |w, g, _| {
            for i in 0..4 {
                v[i] = 0.9 * v[i] - lr * g[i];
                w[i] += if nesterov { 0.9 * v[i] - lr * g[i] } else { v[i] };
            }
        });
    }
}

/// Kingma and Ba with explicit bias correction; Keras' folded form equals it with
/// `eps_hat = eps sqrt(1 - b2^t)`.
#[test]
fn adam_and_amsgrad() {
    let (lr, b1, b2, eps) = (0.05, 0.9, 0.99, 1e-7);
    for amsgrad in [false, true] {
        let (mut m, mut v, mut vmax) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
        let rule = Rule::Adam { beta_1: b1 as f32, beta_2: b2 as f32, epsilon: eps as f32, amsgrad };
        compare(OptimizerSpec::new(rule, lr), move |w, g, t| {
            let t = t as i32;
            for i in 0..4 {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                vmax[i] = vmax[i].max(v[i]);
                let vv = if amsgrad { vmax[i] } else { v[i] };
                let m_hat = m[i] / (1.0 - b1.powi(t));
                let v_hat = vv / (1.0 - b2.powi(t));
                w[i] -= lr * m_hat / (v_hat.sqrt() + eps * (1.0 - b2.powi(t)).sqrt());
            }
        });
    }
}

#[test]
fn adagrad() {
    let (lr, eps) = (0.3, 1e-7);
    let mut acc = [0.1f64; 4];
    compare(OptimizerSpec::new(Rule::Adagrad { initial_accumulator_value: 0.1, epsilon: 1e-7 }, lr), move |w, g, _| {
        for i in 0..4 {
            acc[i] += g[i] * g[i];
            w[i] -= lr * g[i] / (acc[i] + eps).sqrt();
        }
    });
}

#[test]
fn rmsprop_plain_centered_and_with_momentum() {
    let (lr, rho, eps) = (0.01, 0.9, 1e-7);
    for (momentum, centered) in [(0.0, false), (0.0, true), (0.5, false), (0.5, true)] {
        let (mut s, mut a, mut b) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
        let rule = Rule::Rmsprop { rho: rho as f32, momentum: momentum as f32, epsilon: eps as f32, centered };
        compare(OptimizerSpec::new(rule, lr), move |w, g, _| {
            for i in 0..4 {
                s[i] = rho * s[i] + (1.0 - rho) * g[i] * g[i];
                let denom = if centered {
                    a[i] = rho * a[i] + (1.0 - rho) * g[i];
                    s[i] - a[i] * a[i] + eps
                } else {
                    s[i] + eps
                };
                let inc = lr * g[i] / denom.sqrt();
                if momentum > 0.0 {
                    b[i] = momentum * b[i] + inc;
                    w[i] -= b[i];
                } else {
                    w[i] -= inc;
                }
            }
        });
    }
}

#[test]
fn adamax() {
    let (lr, b1, b2, eps) = (0.02, 0.9, 0.999, 1e-7);
    let (mut m, mut u) = ([0.0f64; 4], [0.0f64; 4]);
    compare(OptimizerSpec::new(Rule::Adamax { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }, lr), move |w, g, t| {
        for i in 0..4 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            u[i] = (b2 * u[i]).max(g[i].abs());
            w[i] -= lr / (1.0 - b1.powi(t as i32)) * m[i] / (u[i] + eps);
        }
    });
}

/// Dozat's Nadam with the momentum schedule `mu_t = b1 (1 - 0.5 * 0.96^(t/250))`.
#[test]
fn nadam() {
    let (lr, b1, b2, eps) = (0.02, 0.9, 0.999, 1e-7);
    let (mut m, mut v, mut prod) = ([0.0f64; 4], [0.0f64; 4], 1.0f64);
    compare(OptimizerSpec::new(Rule::Nadam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }, lr), move |w, g, t| {
        let t = t as f64;
        let mu = |t: f64| b1 * (1.0 - 0.5 * 0.96f64.powf(t / 250.0));
        prod *= mu(t);
        let prod_next = prod * mu(t + 1.0);
        for i in 0..4 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let m_hat = mu(t + 1.0) * m[i] / (1.0 - prod_next) + (1.0 - mu(t)) * g[i] / (1.0 - prod);
            let v_hat = v[i] / (1.0 - b2.powf(t));
            w[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    });
}

#[test]
fn decoupled_weight_decay_touches_kernels_only() {
    let (lr, wd) = (0.1, 0.5);
    let mut spec = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, lr);
    spec.weight_decay = wd as f32;
    // Tensors: a kernel of 3 values, then a bias of 1 (index 3): the bias is not decayed.
    compare(spec, |w, g, _| {
        for i in 0..4 {
            if i < 3 {
                w[i] *= 1.0 - lr * wd;
            }
            w[i] -= lr * g[i];
        }
    });
}

#[test]
fn clipping_bounds_the_norms() {
    let store = {
        let mut s = ParamStore::default();
        s.register("k".into(), vec![3], Role::Kernel);
        s.register("b".into(), vec![1], Role::Bias);
        s
    };
    let run = |set: &dyn Fn(&mut OptimizerSpec)| {
        let mut spec = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 1.0);
        set(&mut spec);
        let mut opt = Optimizer::new(&spec, 4).unwrap();
        let mut w = [0.0f32; 4];
        let mut g = [3.0f32, 4.0, 0.0, 10.0];
        opt.step(&mut w, &mut g, &store.tensors);
        w.map(|v| -v)
    };
    let applied = run(&|s| s.clipvalue = Some(2.0));
    assert_eq!(applied, [2.0, 2.0, 0.0, 2.0]);
    let applied = run(&|s| s.clipnorm = Some(1.0));
    assert!((applied[0] - 0.6).abs() < 1e-6 && (applied[1] - 0.8).abs() < 1e-6 && (applied[3] - 1.0).abs() < 1e-6);
    let applied = run(&|s| s.global_clipnorm = Some(1.0));
    let norm = applied.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    let mut both = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 1.0);
    both.clipnorm = Some(1.0);
    both.clipvalue = Some(1.0);
    assert!(Optimizer::new(&both, 4).is_err());
}

#[test]
fn the_schedule_sets_each_step_rate() {
    let mut spec = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 0.0);
    spec.learning_rate =
        LearningRate::Schedule(Schedule::PiecewiseConstantDecay { boundaries: vec![1.0], values: vec![0.1, 0.01] });
    let mut rates = vec![];
    compare(spec, |w, g, t| {
        let lr = if t <= 2 { 0.1 } else { 0.01 };
        rates.push(lr);
        (0..4).for_each(|i| w[i] -= lr * g[i])
    });
}

#[test]
fn large_models_take_the_parallel_path_with_the_same_result() {
    let n = 100_000;
    let g0: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) / 10.0).collect();
    let spec = OptimizerSpec::new(Rule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: true }, 0.01);
    let run = |threads: usize| {
        let mut opt = Optimizer::new(&spec, n).unwrap();
        let mut w = vec![0.5f32; n];
        let mut g = g0.clone();
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| opt.step(&mut w, &mut g, &[]));
        w
    };
    assert_eq!(run(1), run(2));
}
