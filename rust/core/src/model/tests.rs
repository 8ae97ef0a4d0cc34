use super::*;
use crate::activation::Activation;
use crate::layers::{ActivationConfig, BatchNormalizationConfig, InitSpec, LayerConfig, LayerSpec, PReluConfig};
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
    let prelu = |shared: Vec<usize>| {
        let config = PReluConfig {
            alpha_initializer: InitSpec::constant(0.25),
            shared_axes: Some(shared),
            alpha_regularizer: Some(Regularizer::L2 { l2: 0.1 }),
        };
        LayerSpec::new("p", config)
    };
    let mut a = dense("a", 5, Activation::Linear);
    if let LayerConfig::Dense(d) = &mut a.config {
        d.kernel.kernel_regularizer = Some(Regularizer::L1l2 { l1: 0.01, l2: 0.02 });
        d.kernel.bias_regularizer = Some(Regularizer::Lp { p: 3.0, factor: 0.1 });
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
        LayerSpec::new("s", ActivationConfig { activation: SOFTMAX }),
    ];
    let mut m = model(layers.clone(), Loss::SparseCategoricalCrossentropy { from_logits: false }, 4);
    check_gradients(&mut m, &x, &labels, rows);
    let layers = vec![
        layers[0].clone(),
        LayerSpec::new("t", ActivationConfig { activation: Activation::Tanh }),
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
        let (x, y) = (SmallVec::from_slice(x), SmallVec::from_slice(y));
        Dataset { x, y, weights: SmallVec::new(), rows, input_shapes: SmallVec::new() }
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
                inputs: vec![InputSpec::new("a", vec![3]), InputSpec::new("b", vec![3])],
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
                LayerSpec::new("bn", BatchNormalizationConfig { momentum: 0.9, ..Default::default() }),
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
            inputs: vec![InputSpec::new("a", vec![3])],
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
        m.predict_slices(&[&x], rows, 2, &mut [&mut o1, &mut o2, &mut o3]).unwrap();
        assert_eq!(o3, x);
    }

    /// An inference pass reuses a node's buffer once its last reader has run: a tensor read
    /// three nodes later (a skip connection) and an intermediate output keep theirs, and the
    /// outputs equal a training pass's in inference mode, bit for bit.
    #[test]
    fn inference_reuses_buffers_only_after_the_last_read() {
        let rows = 3;
        let x = random(rows * 3, 51);
        let spec = GraphSpec {
            inputs: vec![InputSpec::new("a", vec![3])],
            layers: vec![
                dense("d0", 4, Activation::Tanh),
                dense("d1", 4, Activation::Tanh),
                dense("d2", 4, Activation::Tanh),
                merge("add"),
                dense("d4", 4, Activation::Tanh),
                dense("d5", 2, Activation::Linear),
            ],
            nodes: vec![
                node(0, &[inp(0)]),
                node(1, &[n(0)]),
                node(2, &[n(1)]),
                node(3, &[n(2), n(0)]),
                node(4, &[n(3)]),
                node(5, &[n(4)]),
            ],
            outputs: vec![n(5), n(1)],
        };
        let mut m = compiled(spec, vec![(Some(Loss::MeanSquaredError), 1.0), (None, 1.0)]);
        let (graph, params) = (&m.net.graph, &mut m.net.params.values);
        let (mut kept, mut lean) = (crate::graph::GraphWorkspace::default(), Default::default());
        graph.forward(params, &mut kept, &[&x], rows, false, &mut crate::rng::Stream::new(0, 0));
        graph.infer(params, &mut lean, &[&x], rows);
        // d0, d1 (an output), d2 and the sum each need their own; d4 and d5 reuse freed ones.
        assert_eq!(lean.outputs.len(), 4);
        for &r in &graph.outputs {
            let (a, b) = (graph.tensor(&kept, &[&x], r, rows), graph.tensor(&lean, &[&x], r, rows));
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn bad_graphs_are_errors() {
        let input = vec![InputSpec::new("a", vec![3])];
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

/// The ndarray edge: data sets and predictions as arrays, weights as views of their shapes,
/// `set_weights` all-or-nothing.
mod arrays {
    use super::*;
    use ndarray::{Array1, Array2, ArrayD, IxDyn};

    #[test]
    fn predict_returns_arrays_shaped_like_the_outputs_and_matches_the_slice_path() {
        let mut m =
            model(vec![dense("a", 5, Activation::Tanh), dense("b", 3, Activation::Linear)], Loss::MeanSquaredError, 4);
        let x = Array2::from_shape_vec((6, 4), random(24, 40)).unwrap();
        let out = m.predict(&[x.view().into_dyn()], 4).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape(), &[6, 3]);
        let mut flat = [0.0; 18];
        m.predict_slices(&[x.as_slice().unwrap()], 6, 4, &mut [&mut flat[..]]).unwrap();
        assert_eq!(out[0].as_slice().unwrap(), &flat[..]);
        // A caller-owned output of the wrong shape is refused, not written.
        let mut wrong = ArrayD::<f32>::zeros(IxDyn(&[6, 4]));
        assert!(m.call_into(&[x.view().into_dyn()], 4, false, &mut [wrong.view_mut()]).is_err());
    }

    #[test]
    fn datasets_from_arrays_train_and_check_their_rows() {
        let mut m = model(vec![dense("a", 2, Activation::Linear)], Loss::MeanSquaredError, 3);
        let (x, y) = (Array2::from_shape_vec((8, 3), random(24, 41)).unwrap(), Array2::<f32>::zeros((8, 2)));
        let data = Dataset::from_arrays(&[x.view().into_dyn()], &[y.view().into_dyn()], &[]).unwrap();
        assert_eq!(data.rows, 8);
        let before = m.get_weights();
        m.fit_epoch(&data, 4, false).unwrap();
        assert_ne!(before, m.get_weights());
        let short = Array1::<f32>::zeros(5);
        let err = Dataset::from_arrays(&[x.view().into_dyn()], &[short.view().into_dyn()], &[]).unwrap_err();
        assert!(err.to_string().contains("5 rows but x has 8"), "{err}");
        let strided = x.t();
        assert!(Dataset::from_arrays(&[strided.into_dyn()], &[y.view().into_dyn()], &[]).is_err());
    }

    #[test]
    fn weights_are_views_of_their_shapes_and_set_weights_is_all_or_nothing() {
        let mut m = model(vec![dense("a", 2, Activation::Linear)], Loss::MeanSquaredError, 3);
        assert_eq!(m.weight(0).unwrap().shape(), &[3, 2]);
        assert_eq!(m.weight(1).unwrap().shape(), &[2]);
        let before = m.get_weights();
        let kernel = ArrayD::<f32>::ones(IxDyn(&[3, 2]));
        let bad_bias = ArrayD::<f32>::ones(IxDyn(&[3]));
        assert!(m.set_weights(&[kernel.view(), bad_bias.view()]).is_err());
        assert_eq!(before, m.get_weights(), "a failed set_weights changed nothing");
        let bias = ArrayD::<f32>::from_elem(IxDyn(&[2]), 0.5);
        m.set_weights(&[kernel.view(), bias.view()]).unwrap();
        assert_eq!(m.get_weights(), vec![kernel, bias]);
    }
}

/// Inputs with unknown (`None`) dimensions: each call's data sets them.
mod unknown_dims {
    use super::*;
    use crate::graph::{GraphSpec, InputSpec, UNKNOWN_DIM};
    use crate::layers::{Conv2DConfig, GlobalAveragePooling2DConfig, Padding};
    use ndarray::{Array4, ArrayD};

    fn fully_convolutional(input: InputSpec) -> GraphSpec {
        let conv = Conv2DConfig { padding: Padding::Same, ..Conv2DConfig::new(3, [3, 3], Activation::Tanh) };
        let mut spec = GraphSpec::sequential(
            input.shape.clone(),
            vec![
                LayerSpec::new("conv", conv),
                LayerSpec::new("pool", GlobalAveragePooling2DConfig::default()),
                dense("out", 2, Activation::Linear),
            ],
        );
        spec.inputs = vec![input];
        spec
    }

    fn images(side: (usize, usize), seed: u64) -> ArrayD<f32> {
        Array4::from_shape_vec((4, side.0, side.1, 2), random(4 * side.0 * side.1 * 2, seed)).unwrap().into_dyn()
    }

    #[test]
    fn a_model_with_unknown_image_sizes_predicts_each_size_as_a_fixed_size_model_does() {
        let spec: GraphSpec = fully_convolutional(
            serde_json::from_value(serde_json::json!({"name": "image", "shape": [null, null, 2]})).unwrap(),
        );
        assert_eq!(spec.inputs[0].shape, vec![UNKNOWN_DIM, UNKNOWN_DIM, 2]);
        let mut any = Model::new(spec.clone(), 3).unwrap();
        assert_eq!(any.net.node_shapes(), vec![vec![None, None, Some(3)], vec![Some(3)], vec![Some(2)]]);
        for side in [(5, 5), (8, 6), (5, 5)] {
            let x = images(side, side.0 as u64);
            let mut fixed =
                Model::new(fully_convolutional(InputSpec::new("image", vec![side.0, side.1, 2])), 3).unwrap();
            let weights = any.get_weights();
            let views: Vec<_> = weights.iter().map(|w| w.view()).collect();
            fixed.set_weights(&views).unwrap();
            assert_eq!(any.predict(&[x.view()], 3).unwrap(), fixed.predict(&[x.view()], 3).unwrap(), "{side:?}");
        }
        // Known dimensions still have to match.
        let wrong = Array4::<f32>::zeros((1, 5, 5, 3)).into_dyn();
        let err = any.predict(&[wrong.view()], 1).unwrap_err().to_string();
        assert!(err.contains("(None, None, None, 2)"), "{err}");
        // The declared shape survives a JSON round trip.
        let json = serde_json::to_value(&spec.inputs[0]).unwrap();
        assert_eq!(json, serde_json::json!({"name": "image", "shape": [null, null, 2]}));
    }

    #[test]
    fn an_unknown_dimension_that_would_size_a_weight_is_refused() {
        let input: InputSpec = serde_json::from_value(serde_json::json!({"name": "x", "shape": [null, 3]})).unwrap();
        let mut spec = GraphSpec::sequential(
            vec![1],
            vec![LayerSpec::new("flat", crate::layers::FlattenConfig {}), dense("d", 2, Activation::Linear)],
        );
        spec.inputs = vec![input];
        let Err(err) = Model::new(spec, 0) else { panic!("an unknown dimension sized a weight") };
        assert!(err.to_string().contains("weight 'd/kernel'"), "{err}");
        let shape = crate::graph::Graph::layer_output_shape(&dense("d", 2, Activation::Linear), &[vec![None]]);
        assert!(shape.unwrap_err().to_string().contains("None"));
    }

    #[test]
    fn shared_inference_runs_other_sizes_on_a_graph_of_its_own() {
        let spec = fully_convolutional(
            serde_json::from_value(serde_json::json!({"name": "image", "shape": [null, null, 2]})).unwrap(),
        );
        let mut m = Model::new(spec, 3).unwrap();
        let x = images((6, 5), 9);
        let want = m.predict(&[x.view()], 2).unwrap();
        m.set_input_shapes(&[&[8, 8, 2]]).unwrap();
        let mut s = Scratch::default();
        assert_eq!(m.output_shapes_with(&mut s, &[&[6, 5, 2]]).unwrap(), vec![vec![2]]);
        let mut got = ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 2]));
        m.predict_with(&mut s, 1, &[x.view()], 2, &mut [got.view_mut()]).unwrap();
        assert_eq!(vec![got], want);
        assert_eq!(m.net.input_shapes().next().unwrap(), &[8, 8, 2], "the model's own graph is left alone");
    }
}

#[test]
fn shared_inference_matches_exclusive_and_follows_weight_versions() {
    use ndarray::{Array2, ArrayD, IxDyn};
    let rows = 7;
    let (x, y) = (random(rows * 4, 11), random(rows * 3, 12));
    let mut m =
        model(vec![dense("a", 5, Activation::Tanh), dense("b", 3, Activation::Linear)], Loss::MeanSquaredError, 4);
    let data = Dataset::new(&x, &y, rows);
    let xa = Array2::from_shape_vec((rows, 4), x.clone()).unwrap().into_dyn();
    let mut got = ArrayD::<f32>::zeros(IxDyn(&[rows, 3]));
    let want = m.predict(&[xa.view()], 3).unwrap();
    let mut s = Scratch::default();
    m.predict_with(&mut s, 1, &[xa.view()], 3, &mut [got.view_mut()]).unwrap();
    assert_eq!(got, want[0]);
    let logs = m.evaluate_with(&mut s, 1, &data, 4).unwrap();
    assert_eq!(logs.0, m.evaluate(&data, 4).unwrap().0);

    // The scratch keeps its copy while the version stands, and refreshes it when it moves.
    m.fit_epoch(&data, 4, false).unwrap();
    let want = m.predict(&[xa.view()], 3).unwrap();
    m.predict_with(&mut s, 1, &[xa.view()], 3, &mut [got.view_mut()]).unwrap();
    assert_ne!(got, want[0]);
    m.predict_with(&mut s, 2, &[xa.view()], 3, &mut [got.view_mut()]).unwrap();
    assert_eq!(got, want[0]);
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
