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

// ---- Freezing (Keras `layer.trainable = False`) ----

/// Layout of the freezing tests: kernel `k0` (0..3), frozen kernel `k1` (3..5), bias `b2` (5..8)
/// and frozen kernel `k3` (8..10), so a frozen tensor sits in the middle and at the end.
const FROZEN: [std::ops::Range<usize>; 2] = [3..5, 8..10];
const LIVE: [std::ops::Range<usize>; 2] = [0..3, 5..8];

fn frozen_layout() -> ParamStore {
    let mut s = ParamStore::default();
    s.register("k0".into(), vec![3], Role::Kernel);
    s.register("k1".into(), vec![2], Role::Kernel);
    s.register("b2".into(), vec![3], Role::Bias);
    s.register("k3".into(), vec![2], Role::Kernel);
    s
}

/// The trainable positions of a 10-long buffer, packed.
fn live(v: &[f32]) -> Vec<f32> {
    LIVE.iter().flat_map(|r| v[r.clone()].iter().copied()).collect()
}

/// The frozen positions of a 10-long buffer, packed.
fn frozen(v: &[f32]) -> Vec<f32> {
    FROZEN.iter().flat_map(|r| v[r.clone()].iter().copied()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Nonzero everywhere; large on the frozen tensors, so counting them in a clipping norm shows.
fn frozen_test_grads(w: &[f32]) -> Vec<f32> {
    (0..w.len())
        .map(|i| {
            if FROZEN.iter().any(|r| r.contains(&i)) {
                if i % 2 == 0 {
                    40.0
                } else {
                    -60.0
                }
            } else {
                (0.5 + 0.75 * (i % 4) as f32) * w[i] + 0.1 * (i as f32 - 4.5)
            }
        })
        .collect()
}

fn every_rule() -> Vec<Rule> {
    let (beta_1, beta_2, epsilon) = (0.9, 0.99, 1e-7);
    let mut rules = vec![
        Rule::Sgd { momentum: 0.0, nesterov: false },
        Rule::Sgd { momentum: 0.9, nesterov: false },
        Rule::Sgd { momentum: 0.9, nesterov: true },
        Rule::Adam { beta_1, beta_2, epsilon, amsgrad: false },
        Rule::Adam { beta_1, beta_2, epsilon, amsgrad: true },
        Rule::Adagrad { initial_accumulator_value: 0.1, epsilon },
        Rule::Adamax { beta_1, beta_2, epsilon },
        Rule::Nadam { beta_1, beta_2, epsilon },
    ];
    for (momentum, centered) in [(0.0, false), (0.0, true), (0.5, false), (0.5, true)] {
        rules.push(Rule::Rmsprop { rho: 0.9, momentum, epsilon, centered });
    }
    rules
}

/// Every rule, with and without weight decay and with each clipping option: two steps with
/// nothing frozen (so every slot holds state), then `k1` and `k3` frozen for four more. Frozen
/// values, their gradients and their part of every slot stay bit-identical, and the trainable
/// tensors (values and slots) equal bit for bit those of the same optimizer resumed on a store
/// that holds only the trainable tensors.
#[test]
fn frozen_tensors_are_skipped_by_every_rule_and_option() {
    for rule in every_rule() {
        for option in 0..5 {
            let mut spec = OptimizerSpec::new(rule.clone(), 0.05);
            if option > 0 {
                spec.weight_decay = 0.1;
            }
            match option {
                2 => spec.clipvalue = Some(0.5),
                3 => spec.clipnorm = Some(0.7),
                4 => spec.global_clipnorm = Some(0.9),
                _ => {}
            }
            let what = format!("{rule:?}, option {option}");
            let mut store = frozen_layout();
            let mut opt = Optimizer::new(&spec, 10).unwrap();
            let mut w: Vec<f32> = (0..10).map(|i| 1.0 - 0.3 * i as f32).collect();
            for _ in 0..2 {
                let mut g = frozen_test_grads(&w);
                opt.step(&mut w, &mut g, &store.tensors);
            }
            store.set_trainable(1..2, false);
            store.set_trainable(3..4, false);
            let (w_frozen, slots_frozen): (Vec<f32>, Vec<Vec<f32>>) =
                (frozen(&w), opt.slots().iter().map(|(_, s)| frozen(s)).collect());
            // Every slot the rule uses holds state on the frozen tensors too (RMSprop keeps an
            // unused momentum buffer when centered without momentum).
            for (name, s) in opt.slots() {
                let used = s.iter().any(|&v| v != 0.0);
                assert!(!used || frozen(s).iter().any(|&v| v != 0.0), "{what}: slot {name} holds state");
            }

            // The same optimizer on the trainable tensors alone, resumed from the same state.
            let packed = {
                let mut s = ParamStore::default();
                s.register("k0".into(), vec![3], Role::Kernel);
                s.register("b2".into(), vec![3], Role::Bias);
                s
            };
            let mut reference = Optimizer::new(&spec, 6).unwrap();
            let slots: Vec<(String, Vec<f32>)> = opt.slots().iter().map(|(n, s)| (n.to_string(), live(s))).collect();
            reference.restore(opt.iterations, &slots).unwrap();
            let mut w_ref = live(&w);

            for _ in 0..4 {
                let before = live(&w);
                let mut g = frozen_test_grads(&w);
                let g_frozen = frozen(&g);
                let mut g_ref = live(&g);
                opt.step(&mut w, &mut g, &store.tensors);
                reference.step(&mut w_ref, &mut g_ref, &packed.tensors);
                assert_eq!(bits(&live(&w)), bits(&w_ref), "{what}: trainable values");
                assert_ne!(live(&w), before, "{what}: trainable tensors move");
                assert_eq!(bits(&frozen(&w)), bits(&w_frozen), "{what}: frozen values");
                assert_eq!(bits(&frozen(&g)), bits(&g_frozen), "{what}: frozen gradients (clipping)");
                assert_eq!(bits(&live(&g)), bits(&g_ref), "{what}: trainable gradients (clipping)");
                for (((name, s), (_, s_ref)), s_frozen) in opt.slots().iter().zip(reference.slots()).zip(&slots_frozen)
                {
                    assert_eq!(bits(&live(s)), bits(s_ref), "{what}: slot {name}, trainable part");
                    assert_eq!(bits(&frozen(s)), bits(s_frozen), "{what}: slot {name}, frozen part");
                }
            }
            assert_eq!(opt.iterations, reference.iterations);
        }
    }
}

/// Plain SGD with decoupled weight decay and a global clipnorm, by hand: the frozen kernel is
/// neither decayed, nor updated, nor counted in the norm.
#[test]
fn frozen_sgd_step_matches_the_formula() {
    let mut store = ParamStore::default();
    store.register("k0".into(), vec![2], Role::Kernel);
    store.register("k1".into(), vec![2], Role::Kernel);
    store.register("b2".into(), vec![1], Role::Bias);
    store.set_trainable(1..2, false);
    let mut spec = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 0.5);
    spec.weight_decay = 0.1;
    spec.global_clipnorm = Some(1.0);
    let mut opt = Optimizer::new(&spec, 5).unwrap();
    let mut w = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    let mut g = [3.0f32, 0.0, 100.0, -100.0, 4.0];
    opt.step(&mut w, &mut g, &store.tensors);
    // Trainable norm 5 (not sqrt(20025)): gradients scaled by 1/5; kernel kept at 1 - 0.5 * 0.1.
    let want = [0.95 - 0.5 * 0.6, 1.9, 3.0, 4.0, 5.0 - 0.5 * 0.8];
    for i in 0..5 {
        assert!((w[i] as f64 - want[i]).abs() < 1e-6, "{w:?} vs {want:?}");
    }
    assert_eq!(&g[2..4], &[100.0, -100.0]);
}

#[test]
fn segments_are_the_runs_without_frozen_tensors() {
    let runs = |frozen: &[usize], shapes: &[usize], len: usize| {
        let mut s = ParamStore::default();
        for (i, &n) in shapes.iter().enumerate() {
            s.register(format!("t{i}"), vec![n], Role::Kernel);
        }
        frozen.iter().for_each(|&i| s.set_trainable(i..i + 1, false));
        Segments::new(&s.tensors, len).collect::<Vec<_>>()
    };
    assert_eq!(runs(&[], &[], 5), vec![0..5]);
    assert_eq!(runs(&[], &[2, 3], 5), vec![0..5]);
    assert_eq!(runs(&[1, 3], &[3, 2, 3, 2], 10), vec![0..3, 5..8]);
    assert_eq!(runs(&[0, 1], &[3, 2, 3, 2], 10), vec![5..10]);
    assert_eq!(runs(&[0, 2], &[3, 2, 3, 2], 10), vec![3..5, 8..10]);
    assert_eq!(runs(&[1], &[3, 0, 3], 6), vec![0..6]);
    assert_eq!(runs(&[0, 1, 2], &[3, 2, 3], 8), Vec::<std::ops::Range<usize>>::new());
    // A buffer longer than its tensors: the tail counts as trainable.
    assert_eq!(runs(&[1], &[3, 2], 7), vec![0..3, 5..7]);
}

#[test]
fn regularizers_skip_frozen_tensors() {
    use crate::regularizer::Regularizer;
    let mut s = ParamStore::default();
    s.register("k0".into(), vec![2], Role::Kernel);
    s.register("k1".into(), vec![2], Role::Kernel);
    s.register("b2".into(), vec![1], Role::Bias);
    s.tensors[0].regularizer = Some(Regularizer::L2 { l2: 0.5 });
    s.tensors[1].regularizer = Some(Regularizer::L1 { l1: 0.25 });
    s.tensors[2].regularizer = Some(Regularizer::L2 { l2: 1.0 });
    s.values.copy_from_slice(&[1.0, -2.0, 3.0, -4.0, 0.5]);
    s.grads.copy_from_slice(&[0.1, 0.2, 0.3, 0.4, 0.5]);
    let all = 0.5 * 5.0 + 0.25 * 7.0 + 1.0 * 0.25;
    assert!((s.penalty() - all).abs() < 1e-12);
    s.set_trainable(1..2, false);
    let trainable = 0.5 * 5.0 + 1.0 * 0.25;
    assert!((s.penalty() - trainable).abs() < 1e-12);
    assert!((s.apply_regularizers() - trainable).abs() < 1e-12);
    assert_eq!(s.grads, [0.1 + 1.0, 0.2 - 2.0, 0.3, 0.4, 0.5 + 1.0]);
    s.zero_frozen_grads();
    assert_eq!(s.grads, [0.1 + 1.0, 0.2 - 2.0, 0.0, 0.0, 0.5 + 1.0]);
    s.set_trainable(0..3, true);
    assert!((s.penalty() - all).abs() < 1e-12);
}

/// L-BFGS sweeps the whole vector; with the frozen gradients zeroed after every backward pass
/// (`zero_frozen_grads`) its direction is zero there, so frozen values stay bit-identical.
#[test]
fn lbfgs_leaves_tensors_with_zeroed_gradients_alone() {
    let mut store = frozen_layout();
    store.set_trainable(1..2, false);
    store.set_trainable(3..4, false);
    let a: Vec<f32> = (0..10).map(|i| 0.5 + 0.5 * (i % 3) as f32).collect();
    let mut w: Vec<f32> = (0..10).map(|i| 1.0 - 0.3 * i as f32).collect();
    let w_frozen = frozen(&w);
    let mut g = vec![0.0f32; 10];
    let mut lbfgs = Lbfgs::new(50, 10, 1e-7, 1e-12, 10).unwrap();
    lbfgs.run(1.0, &mut w, &mut g, |w, g| {
        store.values.copy_from_slice(w);
        for i in 0..10 {
            store.grads[i] = a[i] * w[i];
        }
        store.zero_frozen_grads();
        g.copy_from_slice(&store.grads);
        w.iter().zip(&a).map(|(&w, &a)| 0.5 * (a * w * w) as f64).sum()
    });
    assert_eq!(bits(&frozen(&w)), bits(&w_frozen));
    assert!(live(&w).iter().all(|v| v.abs() < 1e-3), "{w:?}");
}
