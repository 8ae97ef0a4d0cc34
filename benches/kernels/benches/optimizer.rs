//! One optimizer step over 1M parameters (the fused update sweep), in GB/s of state touched and
//! steps/s, for each rule at 1 and 2 threads.
//!
//!     cargo bench -p ferronet-benches --bench optimizer

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferronet_core::optim::{Optimizer, OptimizerSpec, Rule};
use ferronet_core::params::{ParamStore, Role};

const N: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let mut store = ParamStore::default();
    store.register("w".into(), vec![N], Role::Kernel);
    let rules = [
        ("sgd", Rule::Sgd { momentum: 0.0, nesterov: false }, 3),
        ("sgd_momentum", Rule::Sgd { momentum: 0.9, nesterov: true }, 5),
        ("adam", Rule::Adam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }, 7),
        ("rmsprop", Rule::Rmsprop { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false }, 5),
        ("adagrad", Rule::Adagrad { initial_accumulator_value: 0.1, epsilon: 1e-7 }, 5),
    ];
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut group = c.benchmark_group(format!("optimizer_step_1M_t{threads}"));
        group.sample_size(30);
        for (name, rule, floats_touched) in rules.clone() {
            // Bytes read and written per step: parameters, gradients and state.
            group.throughput(Throughput::Bytes((N * 4 * floats_touched) as u64));
            let mut opt = Optimizer::new(&OptimizerSpec::new(rule, 1e-3), N).unwrap();
            let mut w = vec![0.5f32; N];
            let mut g: Vec<f32> = (0..N).map(|i| ((i % 17) as f32 - 8.0) * 1e-3).collect();
            group.bench_function(BenchmarkId::new(name, N), |b| {
                pool.install(|| b.iter(|| opt.step(&mut w, &mut g, &store.tensors)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
