//! Convolutional, pooling, normalization and noise layers: forward against direct definitions
//! written here, and every parameter gradient against finite differences through a small model.

use super::*;
use crate::activation::Activation;
use crate::loss::Loss;
use crate::model::Dataset;
use crate::test_support::{check_gradients, dense, model_with_shape, random};

/// A layer spec as the Python side sends it (`type`, `name` and the `get_config` keys).
fn spec(value: serde_json::Value) -> LayerSpec {
    serde_json::from_value(value).unwrap()
}

fn conv(name: &str, filters: usize, k: usize, s: usize, same: bool, d: usize, activation: Activation) -> LayerSpec {
    let mut config = Conv2DConfig {
        strides: [s, s],
        padding: if same { Padding::Same } else { Padding::Valid },
        dilation_rate: [d, d],
        ..Conv2DConfig::new(filters, [k, k], activation)
    };
    config.kernel.bias_initializer = InitSpec { init: crate::init::Initializer::GlorotUniform, seed: None };
    LayerSpec::new(name, config)
}

fn flatten() -> LayerSpec {
    LayerSpec::new("flat", FlattenConfig {})
}

/// Direct convolution by the definition, NHWC, Keras' `same` padding split.
fn direct_conv(
    x: &[f32],
    (h, w, c): (usize, usize, usize),
    kernel: &[f32],
    bias: &[f32],
    k: usize,
    s: usize,
    same: bool,
    d: usize,
    f: usize,
) -> Vec<f32> {
    let span = d * (k - 1) + 1;
    let (oh, ow) = if same { (h.div_ceil(s), w.div_ceil(s)) } else { ((h - span) / s + 1, (w - span) / s + 1) };
    let pad = |n: usize, o: usize| if same { ((o - 1) * s + span).saturating_sub(n) / 2 } else { 0 };
    let (pt, pl) = (pad(h, oh), pad(w, ow));
    let mut out = vec![0.0; oh * ow * f];
    for oy in 0..oh {
        for ox in 0..ow {
            for fo in 0..f {
                let mut acc = bias[fo] as f64;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky * d) as isize - pt as isize;
                        let ix = (ox * s + kx * d) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        for ci in 0..c {
                            let xv = x[(iy as usize * w + ix as usize) * c + ci] as f64;
                            acc += xv * kernel[((ky * k + kx) * c + ci) * f + fo] as f64;
                        }
                    }
                }
                out[(oy * ow + ox) * f + fo] = acc as f32;
            }
        }
    }
    out
}

#[test]
fn conv_forward_matches_direct_convolution() {
    // Stride 1 takes the implicit GEMM where the machine has it (on 3 channels, one segment per
    // kernel row of 3 x 3 values; on 9, of 27), other strides and dilations the patch matrix;
    // filters across a partial 32-wide panel.
    for (c, extra) in [(3, vec![]), (9, vec![(3, 1, true, 1, 33), (2, 1, true, 1, 4), (3, 1, false, 1, 5)])] {
        conv_forward_case(c, extra);
    }
}

fn conv_forward_case(c: usize, extra: Vec<(usize, usize, bool, usize, usize)>) {
    let (h, w) = (7, 6);
    let x = random(2 * h * w * c, 1);
    for (k, s, same, d, f) in extra.into_iter().chain([
        (3, 1, false, 1, 4),
        (3, 2, true, 1, 2),
        (2, 2, false, 1, 3),
        (3, 1, true, 2, 2),
        (1, 1, false, 1, 5),
        (5, 3, true, 1, 1),
    ]) {
        let mut m = model_with_shape(
            vec![conv("c", f, k, s, same, d, Activation::Linear)],
            Loss::MeanSquaredError,
            vec![h, w, c],
        );
        let kernel = m.net.params.values[m.net.params.tensors[0].range()].to_vec();
        let bias = m.net.params.values[m.net.params.tensors[1].range()].to_vec();
        let ow = m.net.output_width(0);
        let mut out = vec![0.0; 2 * ow];
        m.predict_slices(&[&x], 2, 2, &mut [&mut out[..]]).unwrap();
        for n in 0..2 {
            let want = direct_conv(&x[n * h * w * c..(n + 1) * h * w * c], (h, w, c), &kernel, &bias, k, s, same, d, f);
            assert_eq!(want.len(), ow);
            for (a, b) in out[n * ow..(n + 1) * ow].iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "k{k} s{s} same{same} d{d}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn conv_gradients_for_strides_paddings_dilations_and_channels() {
    let rows = 3;
    for (c, f, k, s, same, d, act) in [
        (1, 2, 3, 1, false, 1, Activation::Tanh),
        (2, 3, 3, 2, true, 1, Activation::Relu),
        (3, 2, 2, 2, false, 1, Activation::Linear),
        (2, 2, 3, 1, true, 2, Activation::Gelu { approximate: false }),
        (2, 4, 1, 1, false, 1, Activation::Sigmoid),
    ] {
        let shape = vec![5, 5, c];
        let layers = vec![conv("c", f, k, s, same, d, act), flatten(), dense("o", 2, Activation::Linear)];
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, shape);
        let x = random(rows * 25 * c, 2);
        check_gradients(&mut m, &x, &random(rows * 2, 3), rows);
    }
}

#[test]
fn conv_input_gradients_through_stacked_convolutions() {
    // The first convolution's weight gradients go through the second one's input gradient: the
    // implicit GEMM for stride 1 (same and valid padding, asymmetric `same` with an even kernel,
    // more than one 32-channel panel) and the patch-matrix path for stride 2.
    let rows = 2;
    // With 9 or 35 channels into the second convolution, its forward and weight gradient are
    // implicit GEMMs too; with 35 filters its weight gradient spans two 32-wide panels.
    let cases = [
        (3, 3, 1, true, 2),
        (3, 3, 1, false, 2),
        (4, 2, 1, true, 2),
        (35, 3, 1, true, 2),
        (3, 3, 2, true, 2),
        (9, 2, 1, true, 2),
        (9, 3, 1, false, 2),
        (9, 3, 1, true, 35),
    ];
    for (f1, k2, s2, same2, f2) in cases {
        let layers = vec![
            conv("c1", f1, 2, 1, true, 1, Activation::Tanh),
            conv("c2", f2, k2, s2, same2, 1, Activation::Tanh),
            flatten(),
            dense("o", 2, Activation::Linear),
        ];
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![6, 5, 2]);
        check_gradients(&mut m, &random(rows * 60, 8), &random(rows * 2, 9), rows);
    }
}

#[test]
fn pooling_gradients() {
    let rows = 3;
    let pools = vec![
        spec(serde_json::json!({"type": "max_pooling2d", "name": "p", "pool_size": [2, 2]})),
        spec(serde_json::json!({"type": "max_pooling2d", "name": "p", "pool_size": [3, 3], "strides": [2, 2],
                                "padding": "same"})),
        spec(serde_json::json!({"type": "average_pooling2d", "name": "p", "pool_size": [2, 2]})),
        spec(serde_json::json!({"type": "average_pooling2d", "name": "p", "pool_size": [2, 2], "strides": [2, 2],
                                "padding": "same"})),
        spec(serde_json::json!({"type": "global_average_pooling2d", "name": "p"})),
        spec(serde_json::json!({"type": "global_max_pooling2d", "name": "p"})),
    ];
    for pool in pools {
        let layers =
            vec![conv("c", 3, 2, 1, false, 1, Activation::Tanh), pool, flatten(), dense("o", 2, Activation::Linear)];
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![6, 6, 2]);
        check_gradients(&mut m, &random(rows * 72, 4), &random(rows * 2, 5), rows);
    }
}

#[test]
fn average_pooling_with_same_padding_averages_inside_cells_only() {
    let pool = LayerSpec::new("p", AveragePooling2DConfig::new([2, 2], None, Padding::Same));
    let mut m = model_with_shape(vec![pool], Loss::MeanSquaredError, vec![3, 3, 1]);
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut out = vec![0.0; 4];
    m.predict_slices(&[&x], 1, 1, &mut [&mut out[..]]).unwrap();
    assert_eq!(out, vec![3.0, 4.5, 7.5, 9.0]);
}

fn batch_norm() -> LayerSpec {
    LayerSpec::new("bn", BatchNormalizationConfig { momentum: 0.9, ..Default::default() })
}

#[test]
fn normalization_gradients_through_the_statistics() {
    let rows = 6;
    // BatchNorm after Dense, after Conv2D (per channel), LayerNorm after Dense.
    let cases = vec![
        (
            vec![
                dense("a", 4, Activation::Linear),
                batch_norm(),
                LayerSpec::new("t", ActivationConfig { activation: Activation::Tanh }),
                dense("o", 2, Activation::Linear),
            ],
            vec![3],
        ),
        (
            vec![
                conv("c", 3, 2, 1, false, 1, Activation::Linear),
                batch_norm(),
                flatten(),
                dense("o", 2, Activation::Linear),
            ],
            vec![4, 4, 2],
        ),
        (
            vec![
                dense("a", 5, Activation::Linear),
                LayerSpec::new("ln", LayerNormalizationConfig::default()),
                dense("o", 2, Activation::Tanh),
            ],
            vec![3],
        ),
    ];
    for (layers, shape) in cases {
        let n: usize = shape.iter().product();
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, shape);
        // Non-trivial gamma and beta, so their gradients and the scaled input gradient both count.
        for t in m.net.params.tensors.clone() {
            if t.role == crate::params::Role::Norm {
                let r = random(t.len(), t.offset as u64);
                m.net.params.values[t.range()].iter_mut().zip(r).for_each(|(v, r)| *v += 0.5 * r);
            }
        }
        check_gradients(&mut m, &random(rows * n, 6), &random(rows * 2, 7), rows);
    }
}

#[test]
fn batch_norm_moving_statistics_converge_and_drive_inference() {
    let rows = 200;
    let layers = vec![LayerSpec::new("bn", BatchNormalizationConfig { momentum: 0.5, ..Default::default() })];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![2]);
    // Feature 0 ~ 3 + 2 U(-1,1) (mean 3, var 4/3); feature 1 ~ -1 + U(-1,1)/2 (mean -1, var 1/12).
    let u = random(rows * 2, 8);
    let x: Vec<f32> = u.chunks(2).flat_map(|p| [3.0 + 2.0 * p[0], -1.0 + 0.5 * p[1]]).collect();
    let stats = |i: usize| {
        let v: Vec<f64> = x.iter().skip(i).step_by(2).map(|&v| v as f64).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (m, v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64)
    };
    let y = vec![0.0; rows * 2];
    for _ in 0..30 {
        m.fit_epoch(&Dataset::new(&x, &y, rows), rows, false).unwrap();
    }
    let p = m.net.params.clone();
    let moving_mean = &p.values[p.tensors[2].range()];
    let moving_var = &p.values[p.tensors[3].range()];
    for i in 0..2 {
        let (mu, var) = stats(i);
        assert!((moving_mean[i] as f64 - mu).abs() < 1e-4, "mean {i}");
        assert!((moving_var[i] as f64 - var).abs() < 1e-4, "var {i}");
    }
    // Inference uses the moving statistics: output (x - mean) / sqrt(var + eps) * gamma + beta.
    let (g, b) = (p.values[p.tensors[0].range()].to_vec(), p.values[p.tensors[1].range()].to_vec());
    let mut out = [0.0; 2];
    m.predict_slices(&[&[5.0, 0.0]], 1, 1, &mut [&mut out[..]]).unwrap();
    for i in 0..2 {
        let want = ([5.0, 0.0][i] - moving_mean[i]) / (moving_var[i] + 1e-3).sqrt() * g[i] + b[i];
        assert!((out[i] - want).abs() < 1e-5);
    }
}

#[test]
fn noise_layers_train_with_consistent_gradients_and_vanish_in_inference() {
    let rows = 8;
    for noise in
        [LayerSpec::new("d", DropoutConfig { rate: 0.3 }), LayerSpec::new("g", GaussianNoiseConfig { stddev: 0.2 })]
    {
        let layers = vec![dense("a", 6, Activation::Tanh), noise.clone(), dense("o", 2, Activation::Linear)];
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![3]);
        check_gradients(&mut m, &random(rows * 3, 9), &random(rows * 2, 10), rows);
        // Inference is the identity: the model equals the same stack without the noise layer.
        let mut plain = model_with_shape(
            vec![dense("a", 6, Activation::Tanh), dense("o", 2, Activation::Linear)],
            Loss::MeanSquaredError,
            vec![3],
        );
        plain.net.params.values.copy_from_slice(&m.net.params.values);
        let (mut a, mut b) = (vec![0.0; rows * 2], vec![0.0; rows * 2]);
        let x = random(rows * 3, 11);
        m.predict_slices(&[&x], rows, rows, &mut [&mut a[..]]).unwrap();
        plain.predict_slices(&[&x], rows, rows, &mut [&mut b[..]]).unwrap();
        assert_eq!(a, b);
    }
    let layers = vec![
        conv("c", 3, 2, 1, false, 1, Activation::Tanh),
        LayerSpec::new("s", SpatialDropout2DConfig { rate: 0.4 }),
        flatten(),
        dense("o", 2, Activation::Linear),
    ];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![4, 4, 2]);
    check_gradients(&mut m, &random(rows * 32, 12), &random(rows * 2, 13), rows);
}

#[test]
fn dropout_keeps_the_expected_scale_and_drops_whole_channels_spatially() {
    let rows = 2000;
    let layers = vec![LayerSpec::new("d", DropoutConfig { rate: 0.25 })];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![10]);
    let x = vec![1.0f32; rows * 10];
    let mut ws = crate::graph::GraphWorkspace::default();
    m.net.forward(&mut ws, &[&x], rows, true);
    let out = &ws.outputs[0][..rows * 10];
    let mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len() as f64;
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
    assert!(out.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
}

#[test]
fn shapes_of_flatten_reshape_and_bad_specs() {
    let m = model_with_shape(
        vec![LayerSpec::new("r", ReshapeConfig { target_shape: vec![-1, 4] }), flatten()],
        Loss::MeanSquaredError,
        vec![2, 6],
    );
    assert_eq!(m.net.node_shapes(), vec![vec![Some(3), Some(4)], vec![Some(12)]]);
    let bad = crate::model::Model::new(
        &crate::network::ModelSpec {
            input_shape: vec![2, 6],
            layers: vec![LayerSpec::new("r", ReshapeConfig { target_shape: vec![5, -1] })],
        },
        0,
    );
    assert!(bad.is_err());
    let bad = crate::model::Model::new(
        &crate::network::ModelSpec {
            input_shape: vec![2, 2, 1],
            layers: vec![conv("c", 1, 3, 1, false, 1, Activation::Linear)],
        },
        0,
    );
    assert!(bad.err().unwrap().to_string().contains("smaller"));
    let bad = crate::model::Model::new(
        &crate::network::ModelSpec {
            input_shape: vec![10],
            layers: vec![conv("c", 1, 3, 1, false, 1, Activation::Linear)],
        },
        0,
    );
    assert!(bad.err().unwrap().to_string().contains("height, width, channels"));
}

#[test]
fn residual_block_gradients_identity_and_projection() {
    let rows = 4;
    let block =
        |units| vec![dense("r1", units, Activation::Tanh), batch_norm(), dense("r2", units, Activation::Linear)];
    let identity = LayerSpec::new("res", ResidualConfig { layers: block(4), shortcut: None });
    let layers = vec![dense("a", 4, Activation::Tanh), identity, dense("o", 2, Activation::Linear)];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![3]);
    check_gradients(&mut m, &random(rows * 3, 20), &random(rows * 2, 21), rows);

    let shortcut = Some(Box::new(dense("proj", 5, Activation::Linear)));
    let projected = LayerSpec::new("res", ResidualConfig { layers: block(5), shortcut });
    let layers = vec![dense("a", 4, Activation::Tanh), projected, dense("o", 2, Activation::Linear)];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![3]);
    check_gradients(&mut m, &random(rows * 3, 22), &random(rows * 2, 23), rows);

    let layers = vec![conv("c1", 2, 3, 1, true, 1, Activation::Relu), conv("c2", 2, 3, 1, true, 1, Activation::Linear)];
    let conv_block = LayerSpec::new("res", ResidualConfig { layers, shortcut: None });
    let layers = vec![conv_block, flatten(), dense("o", 2, Activation::Linear)];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![4, 4, 2]);
    check_gradients(&mut m, &random(rows * 32, 24), &random(rows * 2, 25), rows);
}

#[test]
fn residual_forward_adds_the_shortcut_and_rejects_mismatched_shapes() {
    let res = LayerSpec::new("res", ResidualConfig { layers: vec![dense("r", 3, Activation::Linear)], shortcut: None });
    let mut m = model_with_shape(vec![res], Loss::MeanSquaredError, vec![3]);
    let x = random(6, 26);
    let mut out = [0.0; 6];
    m.predict_slices(&[&x], 2, 2, &mut [&mut out[..]]).unwrap();
    let p = &m.net.params;
    let (w, b) = (&p.values[p.tensors[0].range()], &p.values[p.tensors[1].range()]);
    for r in 0..2 {
        for j in 0..3 {
            let f: f32 = (0..3).map(|i| x[r * 3 + i] * w[i * 3 + j]).sum::<f32>() + b[j];
            assert!((out[r * 3 + j] - (f + x[r * 3 + j])).abs() < 1e-5);
        }
    }
    let bad = LayerSpec::new("res", ResidualConfig { layers: vec![dense("r", 4, Activation::Linear)], shortcut: None });
    let e = crate::model::Model::new(&crate::network::ModelSpec { input_shape: vec![3], layers: vec![bad] }, 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("shortcut"), "{e}");
}

#[test]
fn preprocessing_and_augmentation_gradients_and_inference_identity() {
    let rows = 3;
    let augment = [
        serde_json::json!({"type": "random_flip", "name": "flip"}),
        serde_json::json!({"type": "random_translation", "name": "shift", "height_factor": 0.2,
                           "width_factor": [-0.2, 0.2]}),
        serde_json::json!({"type": "random_rotation", "name": "turn", "factor": 0.1}),
        serde_json::json!({"type": "random_zoom", "name": "zoom", "height_factor": [-0.2, 0.2]}),
    ]
    .map(spec);
    // Input gradients through the transforms are exercised by a conv layer in front of them.
    let layers = vec![
        conv("c", 2, 1, 1, false, 1, Activation::Linear),
        augment[0].clone(),
        augment[1].clone(),
        augment[2].clone(),
        augment[3].clone(),
        LayerSpec::new("r", RescalingConfig { scale: 0.5, offset: 0.1 }),
        flatten(),
        dense("o", 2, Activation::Linear),
    ];
    let mut m = model_with_shape(layers, Loss::MeanSquaredError, vec![5, 5, 2]);
    check_gradients(&mut m, &random(rows * 50, 30), &random(rows * 2, 31), rows);
    // Inference: augmentation is the identity.
    let mut m = model_with_shape(augment.to_vec(), Loss::MeanSquaredError, vec![4, 4, 1]);
    let x = random(16, 32);
    let mut out = vec![0.0; 16];
    m.predict_slices(&[&x], 1, 1, &mut [&mut out[..]]).unwrap();
    assert_eq!(out, x);
}

#[test]
fn horizontal_flip_mirrors_rows_exactly() {
    let aug = LayerSpec::new("aug", RandomFlipConfig { mode: "horizontal".into() });
    let mut m = model_with_shape(vec![aug], Loss::MeanSquaredError, vec![2, 3, 1]);
    let x: Vec<f32> = (0..6 * 40).map(|v| (v % 6) as f32).collect();
    let mut out = vec![0.0; 6 * 40];
    m.call_slices(&[&x], 40, 40, true, &mut [&mut out[..]]).unwrap();
    let mirrored = [2.0, 1.0, 0.0, 5.0, 4.0, 3.0];
    let flips = out.chunks(6).filter(|s| *s == mirrored).count();
    let same = out.chunks(6).filter(|s| *s == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).count();
    assert_eq!(flips + same, 40);
    assert!(flips > 5 && same > 5);
}

#[test]
fn specs_read_the_python_get_config_with_keras_forms() {
    // What `Dense(4, activation="relu", kernel_regularizer=L2(0.1)).get_config()` sends, with the
    // keys the engine ignores (`trainable`, `dtype`).
    let dense = spec(serde_json::json!({
        "type": "dense", "name": "d", "units": 4, "activation": "relu", "trainable": false, "dtype": "float32",
        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.1}}, "bias_regularizer": null,
    }));
    let LayerConfig::Dense(d) = &dense.config else { panic!("{dense:?}") };
    assert_eq!((d.units, d.kernel.activation), (4, Activation::Relu));
    assert_eq!(d.kernel.kernel_regularizer, Some(crate::regularizer::Regularizer::L2 { l2: 0.1 }));
    assert_eq!(d.kernel.bias_regularizer, None);
    // Keras' defaults fill what the config leaves out.
    let bn = spec(serde_json::json!({"type": "batch_normalization", "name": "bn"}));
    assert_eq!(bn.config, BatchNormalizationConfig::default().into());
    let dot = spec(serde_json::json!({"type": "dot", "name": "dot", "axes": 1}));
    assert_eq!(dot.config, DotConfig { axes: merge::DotAxes::Both(1), normalize: false }.into());
    // Validation is the engine's, before any shape is known.
    let bad = spec(serde_json::json!({"type": "dropout", "name": "drop", "rate": 1.5}));
    assert!(bad.validate().unwrap_err().to_string().contains("rate must be in [0, 1)"));
    assert!(serde_json::from_value::<LayerSpec>(serde_json::json!({"type": "no_such_layer", "name": "x"})).is_err());
    // The registry lists every type once.
    let mut types = LayerConfig::TYPES.to_vec();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), LayerConfig::TYPES.len());
}

/// An inference pass keeps nothing for backward and reuses the buffers of tensors read for the
/// last time, yet computes what a training pass in inference mode computes, bit for bit: every
/// layer's lean path (convolutions on each of their paths, pooling, normalizations, residual
/// branches, activations whose derivative needs `z`).
#[test]
fn inference_pass_matches_inference_mode_forward_and_keeps_nothing() {
    // 11 samples: a convolution's inference shares one grid among 8, then 3.
    let rows = 11;
    let pool = |name: &str, size: usize, stride: usize, padding: &str| {
        spec(serde_json::json!({"type": "max_pooling2d", "name": name, "pool_size": [size, size],
                                "strides": [stride, stride], "padding": padding}))
    };
    let gelu = Activation::Gelu { approximate: false };
    let block = vec![conv("r1", 8, 3, 1, true, 1, Activation::Swish), batch_norm(), conv("r2", 8, 1, 1, true, 1, gelu)];
    let cnn = vec![
        conv("first", 8, 3, 1, true, 1, gelu),
        pool("tiled", 2, 2, "valid"),
        conv("cells", 8, 3, 1, true, 1, Activation::LeakyRelu { negative_slope: 0.1 }),
        batch_norm(),
        LayerSpec::new("res", ResidualConfig { layers: block, shortcut: None }),
        spec(serde_json::json!({"type": "group_normalization", "name": "gn", "groups": 2})),
        conv("strided", 6, 3, 2, true, 1, Activation::Mish),
        pool("overlapping", 3, 2, "same"),
        spec(serde_json::json!({"type": "global_max_pooling2d", "name": "gmp"})),
        spec(serde_json::json!({"type": "dropout", "name": "drop", "rate": 0.5})),
        spec(serde_json::json!({"type": "layer_normalization", "name": "ln"})),
        dense("o", 3, Activation::Softmax { temperature: 1.0 }),
    ];
    let mlp = vec![dense("h", 7, gelu), batch_norm(), dense("o", 2, Activation::LeakyRelu { negative_slope: 0.2 })];
    for (layers, shape) in [(cnn, vec![12, 12, 1]), (mlp, vec![4])] {
        let mut m = model_with_shape(layers, Loss::MeanSquaredError, shape.clone());
        let x = random(rows * shape.iter().product::<usize>(), 40);
        // Moving statistics away from their initial values, so inference-mode normalization
        // does something.
        let y = random(rows * m.net.output_width(0), 41);
        m.fit_epoch(&Dataset::new(&x, &y, rows), rows, false).unwrap();
        let (graph, params) = (&m.net.graph, &mut m.net.params.values);
        let (mut kept, mut lean) = (crate::graph::GraphWorkspace::default(), Default::default());
        let mut noise = crate::rng::Stream::new(0, 0);
        graph.forward(params, &mut kept, &[&x], rows, false, &mut noise);
        graph.infer(params, &mut lean, &[&x], rows);
        let bits = |ws: &crate::graph::GraphWorkspace| -> Vec<Vec<u32>> {
            graph
                .outputs
                .iter()
                .map(|&r| graph.tensor(ws, &[&x], r, rows).iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        let want = bits(&kept);
        assert_eq!(bits(&lean), want);
        // An inference pass on a workspace sized for training (its layout is another).
        let mut reused = crate::graph::GraphWorkspace::default();
        graph.forward(params, &mut reused, &[&x], rows, false, &mut noise);
        graph.infer(params, &mut reused, &[&x], rows);
        assert_eq!(bits(&reused), want);
        let (kept, lean) = (kept.values_held(), lean.values_held());
        assert!(2 * lean < kept, "inference holds {lean} values, training {kept}");
    }
}
