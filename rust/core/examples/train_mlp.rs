//! Trains the `mlp_mnist` benchmark network (784-256-128-10, ReLU, softmax cross entropy from
//! logits, Adam, batch 128) on synthetic data from pure Rust, for profiling without Python:
//!
//!     cargo run --release --example train_mlp -- [threads] [epochs]

use std::time::Instant;

use ferronet_core::activation::Activation;
use ferronet_core::layers::{DenseConfig, LayerSpec};
use ferronet_core::loss::Loss;
use ferronet_core::optim::{OptimizerSpec, Rule};
use ferronet_core::rng::Stream;
use ferronet_core::{threads, CompileSpec, Dataset, Model, ModelSpec};

fn dense(name: &str, units: usize, activation: Activation) -> LayerSpec {
    LayerSpec::new(name, DenseConfig::new(units, activation))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n_threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let epochs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    threads::set_num_threads(n_threads).unwrap();
    let (rows, width) = (60_000, 784);
    let mut rng = Stream::new(0, 0);
    let x: Vec<f32> = (0..rows * width).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    let y: Vec<f32> = (0..rows).map(|_| rng.below(10) as f32).collect();
    let spec = ModelSpec {
        input_shape: vec![width],
        layers: vec![
            dense("d0", 256, Activation::Relu),
            dense("d1", 128, Activation::Relu),
            dense("d2", 10, Activation::Linear),
        ],
    };
    let mut model = Model::new(&spec, 0).unwrap();
    model
        .compile(&CompileSpec::single(
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            OptimizerSpec::new(Rule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, 1e-3),
            vec![],
        ))
        .unwrap();
    let data = Dataset::new(&x, &y, rows);
    for e in 0..epochs {
        let t = Instant::now();
        let logs = model.fit_epoch(&data, 128, true).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("epoch {e}: {:.0} samples/s, loss {:.4}", rows as f64 / s, logs.get("loss").unwrap());
    }
}
