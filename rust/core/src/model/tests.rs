use super::*;
use crate::activation::Activation;
use crate::layers::LayerSpec;
use crate::loss::Loss;
use crate::network::ModelSpec;
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
    let weighted = m.evaluate(&Dataset::weighted(&x, &y, &w, rows), 4).unwrap().get("loss").unwrap();
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
    assert!(m.evaluate(&Dataset::weighted(&x, &[0.0, 1.0], &w, 2), 2).is_err());
    let spec = ModelSpec { input_shape: vec![2], layers: vec![dense("a", 1, Activation::Linear)] };
    let mut uncompiled = Model::new(&spec, 0).unwrap();
    assert!(matches!(fit(&mut uncompiled, &x, &[0.0, 1.0], 1), Err(Error::InvalidState(_))));
}

mod graphs {
    use super::*;
    use crate::graph::{GraphSpec, InputSpec, NodeSpec, TensorRef};
    use crate::model::HeadSpec;
    use crate::optim::{OptimizerSpec, Rule};
    use crate::test_support::check_gradients_on;
    use smallvec::SmallVec;

    fn node(layer: usize, inputs: &[TensorRef]) -> NodeSpec {
        NodeSpec { layer, inputs: inputs.to_vec() }
    }
    const fn n(j: usize) -> TensorRef {
        TensorRef::Node(j)
    }
    const fn inp(k: usize) -> TensorRef {
        TensorRef::Input(k)
    }

    fn compiled(spec: GraphSpec, losses: Vec<(Option<Loss>, f32)>) -> Model {
        let mut m = Model::new(&spec, 5).unwrap();
        let heads = losses
            .into_iter()
            .enumerate()
            .map(|(k, (loss, weight))| HeadSpec { name: format!("out{k}"), loss, weight, metrics: vec![] })
            .collect();
        let optimizer = OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 0.1);
        m.compile(&CompileSpec { heads, optimizer }).unwrap();
        m
    }

    fn data<'a>(x: &[&'a [f32]], y: &[&'a [f32]], rows: usize) -> Dataset<'a> {
        Dataset { x: SmallVec::from_slice(x), y: SmallVec::from_slice(y), weights: SmallVec::new(), rows }
    }

    fn merge(ty: &str) -> LayerSpec {
        serde_json::from_str(&format!(r#"{{"type": "{ty}", "name": "m_{ty}"}}"#)).unwrap()
    }

    /// Two inputs, a trunk that fans out to two heads and a merge, one shared layer called on
    /// both inputs: every weight's gradient against finite differences, for every merge.
    #[test]
    fn gradients_through_fan_out_shared_layers_and_every_merge() {
        let rows = 4;
        let (x1, x2) = (random(rows * 3, 21), random(rows * 3, 22));
        let labels: Vec<f32> = (0..rows).map(|i| (i % 2) as f32).collect();
        let target = random(rows * 4, 23);
        for ty in ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"] {
            let spec = GraphSpec {
                inputs: vec![
                    InputSpec { name: "a".into(), shape: vec![3] },
                    InputSpec { name: "b".into(), shape: vec![3] },
                ],
                layers: vec![
                    dense("shared", 4, Activation::Tanh),
                    merge(ty),
                    dense("cls", 2, SOFTMAX),
                    dense("reg", 4, Activation::Linear),
                ],
                nodes: vec![
                    node(0, &[inp(0)]),
                    node(0, &[inp(1)]),
                    node(1, &[n(0), n(1)]),
                    node(2, &[n(2)]),
                    // The merged tensor also feeds the second head, and so does a shared output.
                    node(3, &[n(2)]),
                ],
                outputs: vec![n(3), n(4), n(2)],
            };
            let losses = vec![
                (Some(Loss::SparseCategoricalCrossentropy { from_logits: false }), 1.0),
                (Some(Loss::MeanSquaredError), 0.5),
                (Some(Loss::MeanAbsoluteError), 0.25),
            ];
            let mut m = compiled(spec, losses);
            let merged = if ty == "concatenate" { random(rows * 8, 24) } else { random(rows * 4, 24) };
            let d = data(&[&x1, &x2], &[&labels, &target, &merged], rows);
            check_gradients_on(&mut m, &d);
        }
    }

    #[test]
    fn frozen_layers_get_no_gradient_and_the_rest_stays_exact() {
        let rows = 5;
        let x = random(rows * 3, 31);
        let y = random(rows * 2, 32);
        let spec = GraphSpec::sequential(
            vec![3],
            vec![
                dense("a", 4, Activation::Tanh),
                LayerSpec::BatchNormalization {
                    name: "bn".into(),
                    momentum: 0.9,
                    epsilon: 1e-3,
                    center: true,
                    scale: true,
                },
                dense("b", 2, Activation::Linear),
            ],
        );
        for frozen in [[true, false, false], [false, true, false], [false, false, true]] {
            let mut m = compiled(spec.clone(), vec![(Some(Loss::MeanSquaredError), 1.0)]);
            m.set_frozen(&frozen).unwrap();
            check_gradients_on(&mut m, &data(&[&x], &[&y], rows));
            // A training step leaves every frozen value (and BN's moving statistics, when BN is
            // frozen) exactly as it was.
            let before = m.net.params.values.clone();
            m.train_on_batch(&data(&[&x], &[&y], rows)).unwrap();
            for (j, l) in m.net.graph.layers.iter().enumerate() {
                let same = before[l.values.clone()] == m.net.params.values[l.values.clone()];
                assert_eq!(same, frozen[j], "layer {} frozen={}", l.name, frozen[j]);
            }
        }
    }

    #[test]
    fn an_output_without_loss_trains_nothing_and_a_model_input_may_be_an_output() {
        let rows = 3;
        let x = random(rows * 3, 41);
        let y = random(rows * 2, 42);
        let spec = GraphSpec {
            inputs: vec![InputSpec { name: "a".into(), shape: vec![3] }],
            layers: vec![dense("t", 2, Activation::Linear), dense("u", 2, Activation::Linear)],
            nodes: vec![node(0, &[inp(0)]), node(1, &[inp(0)])],
            outputs: vec![n(0), n(1), inp(0)],
        };
        let mut m = compiled(spec, vec![(Some(Loss::MeanSquaredError), 1.0), (None, 1.0), (None, 1.0)]);
        let d = data(&[&x], &[&y, &[], &[]], rows);
        m.compute_gradients(&d).unwrap();
        let u = m.net.graph.layers[1].values.clone();
        assert!(m.net.params.grads[u].iter().all(|&g| g == 0.0));
        check_gradients_on(&mut m, &d);
        let (mut o1, mut o2, mut o3) = (vec![0.0; rows * 2], vec![0.0; rows * 2], vec![0.0; rows * 3]);
        m.predict(&[&x], rows, 2, &mut [&mut o1, &mut o2, &mut o3]).unwrap();
        assert_eq!(o3, x);
    }

    #[test]
    fn bad_graphs_are_errors() {
        let input = vec![InputSpec { name: "a".into(), shape: vec![3] }];
        let two_names = GraphSpec {
            inputs: input.clone(),
            layers: vec![dense("d", 2, Activation::Linear), dense("d", 2, Activation::Linear)],
            nodes: vec![node(0, &[inp(0)]), node(1, &[n(0)])],
            outputs: vec![n(1)],
        };
        assert!(Model::new(&two_names, 0).err().unwrap().to_string().contains("unique"));
        let shared_other_shape = GraphSpec {
            inputs: input.clone(),
            layers: vec![dense("d", 2, Activation::Linear)],
            nodes: vec![node(0, &[inp(0)]), node(0, &[n(0)])],
            outputs: vec![n(1)],
        };
        let e = Model::new(&shared_other_shape, 0).err().unwrap().to_string();
        assert!(e.contains("(None, 3)") && e.contains("(None, 2)"), "{e}");
        let forward_ref = GraphSpec {
            inputs: input,
            layers: vec![dense("d", 2, Activation::Linear), merge("add")],
            nodes: vec![node(1, &[inp(0), n(1)]), node(0, &[n(0)])],
            outputs: vec![n(1)],
        };
        assert!(Model::new(&forward_ref, 0).is_err());
    }
}

#[test]
fn shared_inference_matches_exclusive_and_follows_weight_versions() {
    let rows = 7;
    let (x, y) = (random(rows * 4, 11), random(rows * 3, 12));
    let mut m =
        model(vec![dense("a", 5, Activation::Tanh), dense("b", 3, Activation::Linear)], Loss::MeanSquaredError, 4);
    let data = Dataset::new(&x, &y, rows);
    let (mut want, mut got) = (vec![0.0; rows * 3], vec![0.0; rows * 3]);
    m.predict(&[&x], rows, 3, &mut [&mut want]).unwrap();
    let mut s = Scratch::default();
    m.predict_with(&mut s, 1, &[&x], rows, 3, &mut [&mut got]).unwrap();
    assert_eq!(got, want);
    let logs = m.evaluate_with(&mut s, 1, &data, 4).unwrap();
    assert_eq!(logs.0, m.evaluate(&data, 4).unwrap().0);

    // The scratch keeps its copy while the version stands, and refreshes it when it moves.
    m.fit_epoch(&data, 4, false).unwrap();
    m.predict(&[&x], rows, 3, &mut [&mut want]).unwrap();
    m.predict_with(&mut s, 1, &[&x], rows, 3, &mut [&mut got]).unwrap();
    assert_ne!(got, want);
    m.predict_with(&mut s, 2, &[&x], rows, 3, &mut [&mut got]).unwrap();
    assert_eq!(got, want);
}

#[test]
fn training_yields_when_asked() {
    let rows = 16;
    let (x, y) = (random(rows * 4, 13), random(rows * 3, 14));
    let mut m = model(vec![dense("a", 3, Activation::Linear)], Loss::MeanSquaredError, 4);
    let data = Dataset::new(&x, &y, rows);
    m.begin_epoch(rows, 2, false).unwrap();
    assert!(!m.train_steps_while(&data, usize::MAX, &|| false).unwrap());
    assert_eq!(m.steps_done(), 1);
    assert!(m.train_steps_while(&data, usize::MAX, &|| true).unwrap());
    assert_eq!(m.steps_done(), 8);
}
