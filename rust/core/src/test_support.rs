//! Helpers shared by the engine's unit tests: small models and a finite-difference check of
//! every parameter gradient.

use crate::activation::Activation;
use crate::layers::{DenseConfig, InitSpec, LayerSpec};
use crate::loss::Loss;
use crate::model::{CompileSpec, Dataset, Model};
use crate::network::ModelSpec;
use crate::optim::OptimizerSpec;
use crate::rng::Stream;

pub fn dense(name: &str, units: usize, activation: Activation) -> LayerSpec {
    // Random biases, so the checks also exercise the bias gradient.
    let mut config = DenseConfig::new(units, activation);
    config.kernel.bias_initializer = InitSpec { init: crate::init::Initializer::GlorotUniform, seed: None };
    LayerSpec::new(name, config)
}

pub fn model(layers: Vec<LayerSpec>, loss: Loss, input: usize) -> Model {
    model_with_shape(layers, loss, vec![input])
}

/// A model over samples of `input_shape`, compiled with plain SGD.
pub fn model_with_shape(layers: Vec<LayerSpec>, loss: Loss, input_shape: Vec<usize>) -> Model {
    let mut m = Model::new(&ModelSpec { input_shape, layers }, 3).unwrap();
    let optimizer = OptimizerSpec::new(crate::optim::Rule::Sgd { momentum: 0.0, nesterov: false }, 0.1);
    m.compile(&CompileSpec::single(loss, optimizer, vec![])).unwrap();
    m
}

pub fn random(n: usize, salt: u64) -> Vec<f32> {
    let mut s = Stream::new(99, salt);
    (0..n).map(|_| 2.0 * s.uniform() - 1.0).collect()
}

/// Every parameter's analytic gradient against a central difference of the batch loss.
pub fn check_gradients(m: &mut Model, x: &[f32], y: &[f32], rows: usize) {
    check_gradients_on(m, &Dataset::new(x, y, rows));
}

/// [`check_gradients`] on any data set (several inputs and outputs). Frozen tensors must get a
/// zero gradient (they are not trained), whatever the loss's dependence on them.
pub fn check_gradients_on(m: &mut Model, data: &Dataset<'_>) {
    let data = data.clone();
    m.compute_gradients(&data).unwrap();
    let analytic = m.net.params.grads.clone();
    let h = 2e-3f32;
    for i in 0..m.net.params.len() {
        let orig = m.net.params.values[i];
        let (hi, lo) = (orig + h, orig - h);
        m.net.params.values[i] = hi;
        let up = m.compute_gradients(&data).unwrap();
        m.net.params.values[i] = lo;
        let down = m.compute_gradients(&data).unwrap();
        m.net.params.values[i] = orig;
        let numeric = (up - down) / (hi - lo) as f64;
        let a = analytic[i] as f64;
        let frozen = m.net.params.tensors.iter().any(|t| !t.trainable && t.range().contains(&i));
        if frozen {
            assert_eq!(a, 0.0, "{}: frozen param {i} has a gradient", m.describe());
            continue;
        }
        // Relative 2% plus an absolute floor for the float32 rounding of the forward pass.
        let tol = 1e-3 + 2e-2 * numeric.abs().max(a.abs());
        assert!((numeric - a).abs() <= tol, "{}: param {i}: numeric {numeric} analytic {a}", m.describe());
    }
}
