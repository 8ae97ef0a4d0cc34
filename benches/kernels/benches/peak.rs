//! The machine's fp32 peak, the yardstick for the GEMM figures: the engine's FMA chains
//! (`ferronet_core::cpu::fma_chains`, on the widest vectors the CPU has), one set per thread.
//!
//!     cargo bench -p ferronet-benches --bench peak

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferronet_core::cpu;
use rayon::prelude::*;

fn bench(c: &mut Criterion) {
    let info = cpu::info();
    eprintln!("peak: {} ({})", info.model, info.simd);
    let flops_per_call = cpu::fma_chains(1.0).1;
    let mut group = c.benchmark_group("peak_fp32");
    group.sample_size(10);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.throughput(Throughput::Elements(flops_per_call * threads as u64));
        group.bench_function(BenchmarkId::new(format!("{}_fma", info.simd), format!("t{threads}")), |bch| {
            pool.install(|| {
                bch.iter(|| (0..threads).into_par_iter().map(|t| cpu::fma_chains(1.0 + t as f32).0).sum::<f32>())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
