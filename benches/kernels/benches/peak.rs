//! The machine's fp32 peak, the yardstick for the GEMM figures: independent fused multiply-add
//! chains (enough to cover the FMA latency) on the widest vectors the CPU has, one per thread.
//!
//!     cargo bench -p ferronet-benches --bench peak

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

const STEPS: usize = 1 << 16;
const CHAINS: usize = 12;

/// Returns a value depending on every chain so nothing is optimised away; `FLOPS` per call below.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(seed * 1e-7));
    let mut acc = [_mm512_set1_ps(seed); CHAINS];
    for _ in 0..STEPS {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

const FLOPS_AVX512: u64 = (STEPS * CHAINS * 16 * 2) as u64;

fn bench(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        let mut group = c.benchmark_group("peak_fp32");
        group.sample_size(10);
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            group.throughput(Throughput::Elements(FLOPS_AVX512 * threads as u64));
            group.bench_function(BenchmarkId::new("avx512_fma", format!("t{threads}")), |bch| {
                pool.install(|| {
                    bch.iter(|| {
                        (0..threads)
                            .into_par_iter()
                            // SAFETY: AVX-512F was detected above.
                            .map(|t| unsafe { fma_chains_avx512(1.0 + t as f32) })
                            .sum::<f32>()
                    })
                })
            });
        }
        group.finish();
        return;
    }
    eprintln!("peak: no AVX-512 on this machine; nothing measured");
}

criterion_group!(benches, bench);
criterion_main!(benches);
