//! A convolution layer's forward (inference) and forward + backward, on the conv layers of the
//! `cnn_lenet` and `cnn_bn` workloads, batch 64. A 1x1 convolution (a small product of its own)
//! sits in front of the inner layers so their input gradient is computed (gradients only flow
//! where some weight upstream needs them); the first layers (1 and 3 channels) take the model's
//! input directly, so they compute none, as in the workloads.
//!
//! Also MaxPooling2D(2) on the `cnn_lenet` map its first convolution outputs (28x28x32), and,
//! where the CPU has AVX512_BF16, each convolution under `mixed_bfloat16` (`*_bf16` ids).
//!
//!     cargo bench -p ferronet-benches --bench conv
//!     FERRONET_GEMM=matrixmultiply cargo bench -p ferronet-benches --bench conv   # portable path

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferronet_core::activation::Activation;
use ferronet_core::layers::{
    Conv2DConfig, DTypePolicy, GlobalAveragePooling2DConfig, LayerSpec, MaxPooling2DConfig, Padding,
};
use ferronet_core::loss::Loss;
use ferronet_core::optim::{OptimizerSpec, Rule};
use ferronet_core::rng::Stream;
use ferronet_core::{CompileSpec, Dataset, Model, ModelSpec};

/// (name, height = width, channels, filters, first layer).
const LAYERS: [(&str, usize, usize, usize, bool); 5] = [
    ("lenet_conv1", 28, 1, 32, true),
    ("cnn_bn_conv1", 32, 3, 32, true),
    ("lenet_conv2", 14, 32, 64, false),
    ("cnn_bn_conv2", 32, 32, 32, false),
    ("cnn_bn_conv4", 16, 64, 64, false),
];
const BATCH: usize = 64;

fn model(side: usize, channels: usize, filters: usize, first: bool, dtype: DTypePolicy) -> Model {
    let conv = Conv2DConfig { padding: Padding::Same, dtype, ..Conv2DConfig::new(filters, [3, 3], Activation::Relu) };
    compiled(side, channels, first, LayerSpec::new("conv", conv))
}

/// `layer` between an optional 1x1 convolution and a global average pooling.
fn compiled(side: usize, channels: usize, first: bool, layer: LayerSpec) -> Model {
    let mut layers = vec![layer, LayerSpec::new("pool", GlobalAveragePooling2DConfig::default())];
    if !first {
        let front = Conv2DConfig::new(channels, [1, 1], Activation::Linear);
        layers.insert(0, LayerSpec::new("front", front));
    }
    let mut m = Model::new(&ModelSpec { input_shape: vec![side, side, channels], layers }, 0).unwrap();
    m.compile(&CompileSpec::single(
        Loss::MeanSquaredError,
        OptimizerSpec::new(Rule::Sgd { momentum: 0.0, nesterov: false }, 0.0),
        vec![],
    ))
    .unwrap();
    m
}

fn bench(c: &mut Criterion) {
    for threads in [1usize, 2] {
        ferronet_core::threads::set_num_threads(threads).unwrap();
        let mut group = c.benchmark_group(format!("conv_t{threads}"));
        group
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(2));
        let max_pool = LayerSpec::new("max", MaxPooling2DConfig::new([2, 2], None, Padding::Valid));
        let cases = LAYERS.iter().map(|&(name, side, channels, filters, first)| {
            (name.to_string(), side, channels, filters, model(side, channels, filters, first, DTypePolicy::Float32))
        });
        let bf16_cases = LAYERS.iter().filter(|_| ferronet_core::gemm::bf16_native()).map(
            |&(name, side, channels, filters, first)| {
                let m = model(side, channels, filters, first, DTypePolicy::MixedBfloat16);
                (format!("{name}_bf16"), side, channels, filters, m)
            },
        );
        for (name, side, channels, filters, mut m) in cases
            .chain([("lenet_max_pool".to_string(), 28, 32, 32, compiled(28, 32, false, max_pool))])
            .chain(bf16_cases)
        {
            let mut rng = Stream::new(0, 0);
            let x: Vec<f32> = (0..BATCH * side * side * channels).map(|_| rng.normal()).collect();
            let y = vec![0.0f32; BATCH * filters];
            let mut out = vec![0.0f32; BATCH * filters];
            group.throughput(Throughput::Elements(BATCH as u64));
            group.bench_function(BenchmarkId::new("forward", &name), |b| {
                b.iter(|| m.predict_slices(&[&x], BATCH, BATCH, &mut [&mut out[..]]).unwrap())
            });
            group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
                b.iter(|| m.compute_gradients(&Dataset::new(&x, &y, BATCH)).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
