//! A two-input, two-output model built and trained from Rust with ndarray data (the engine's
//! public edge): a reading `x` of 8 features and a context `c` of 3 go through their own Dense
//! layers, are concatenated into a shared trunk, and two heads learn jointly (note 004's
//! multitask learning): a 3-class label (softmax cross entropy, weight 1) and a real value
//! (mean squared error, weight 0.5). The total loss is `L = 1.0 L_class + 0.5 L_value`.
//!
//!     cargo run --release --example two_heads -- [epochs]

use ferronet_core::activation::Activation;
use ferronet_core::layers::{ConcatenateConfig, DenseConfig, LayerSpec};
use ferronet_core::loss::Loss;
use ferronet_core::metric::{MetricKind, MetricSpec};
use ferronet_core::optim::{OptimizerSpec, Rule};
use ferronet_core::rng::Stream;
use ferronet_core::{CompileSpec, Dataset, GraphSpec, HeadSpec, InputSpec, Model, NodeSpec, TensorRef};
use ndarray::{Array1, Array2, Axis};

const ROWS: usize = 2000;

/// Synthetic data with a known answer: the class is the largest of `x[0] + c[0]`, `x[1] + c[1]`,
/// `x[2] + c[2]`, the value is `mean(x) - c[0]`.
fn data(seed: u64) -> (Array2<f32>, Array2<f32>, Array1<f32>, Array2<f32>) {
    let mut rng = Stream::new(seed, 0);
    let x = Array2::from_shape_fn((ROWS, 8), |_| 2.0 * rng.uniform() - 1.0);
    let c = Array2::from_shape_fn((ROWS, 3), |_| rng.uniform() - 0.5);
    let class = Array1::from_shape_fn(ROWS, |i| {
        let score = |k: usize| x[[i, k]] + c[[i, k]];
        (0..3).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0) as f32
    });
    let value = (x.mean_axis(Axis(1)).unwrap() - c.column(0)).insert_axis(Axis(1));
    (x, c, class, value)
}

fn dense(name: &str, units: usize, activation: Activation) -> LayerSpec {
    LayerSpec::new(name, DenseConfig::new(units, activation))
}

/// The graph: `x -> reading`, `c -> context`, `concat -> trunk -> {class, value}`.
fn graph() -> GraphSpec {
    let call = |layer: usize, inputs: Vec<TensorRef>| NodeSpec { layer, inputs };
    GraphSpec {
        inputs: vec![InputSpec::new("x", vec![8]), InputSpec::new("c", vec![3])],
        layers: vec![
            dense("reading", 32, Activation::Relu),
            dense("context", 8, Activation::Relu),
            LayerSpec::new("joined", ConcatenateConfig { axis: -1 }),
            dense("trunk", 32, Activation::Relu),
            dense("class", 3, Activation::Softmax { temperature: 1.0 }),
            dense("value", 1, Activation::Linear),
        ],
        nodes: vec![
            call(0, vec![TensorRef::Input(0)]),
            call(1, vec![TensorRef::Input(1)]),
            call(2, vec![TensorRef::Node(0), TensorRef::Node(1)]),
            call(3, vec![TensorRef::Node(2)]),
            call(4, vec![TensorRef::Node(3)]),
            call(5, vec![TensorRef::Node(3)]),
        ],
        outputs: vec![TensorRef::Node(4), TensorRef::Node(5)],
    }
}

fn main() -> ferronet_core::Result<()> {
    let epochs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let mut model = Model::new(graph(), 0)?;
    let accuracy = MetricSpec { name: "accuracy".into(), kind: MetricKind::SparseCategoricalAccuracy };
    model.compile(&CompileSpec {
        heads: vec![
            HeadSpec {
                name: "class".into(),
                loss: Some(Loss::SparseCategoricalCrossentropy { from_logits: false }),
                weight: 1.0,
                metrics: vec![accuracy],
            },
            HeadSpec { name: "value".into(), loss: Some(Loss::MeanSquaredError), weight: 0.5, metrics: vec![] },
        ],
        optimizer: OptimizerSpec::new(Rule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, 3e-3),
    })?;

    let (x, c, class, value) = data(1);
    let train = Dataset::from_arrays(
        &[x.view().into_dyn(), c.view().into_dyn()],
        &[class.view().into_dyn(), value.view().into_dyn()],
        &[],
    )?;
    for epoch in 1..=epochs {
        let logs = model.fit_epoch(&train, 32, true)?;
        if epoch == 1 || epoch % 10 == 0 || epoch == epochs {
            let show: Vec<String> = logs.0.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            println!("epoch {epoch:3}: {}", show.join(", "));
        }
    }

    // Held-out data, predicted from ndarray views into new arrays.
    let (x, c, class, value) = data(2);
    let outputs = model.predict(&[x.view().into_dyn(), c.view().into_dyn()], 256)?;
    let (probabilities, predicted) = (&outputs[0], &outputs[1]);
    println!("output shapes: {:?} and {:?}", probabilities.shape(), predicted.shape());
    let hits = probabilities
        .outer_iter()
        .zip(&class)
        .filter(|(p, &label)| {
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
            best as f32 == label
        })
        .count();
    let mse = (predicted - &value).mapv(|d| d * d).mean().unwrap_or(f32::NAN);
    println!("held out: class accuracy {:.3}, value mse {mse:.4}", hits as f64 / ROWS as f64);
    Ok(())
}
