//! GEMM on the shapes of the benchmark workloads, in GFLOP/s (criterion's elements/s, with
//! 2 m k n elements per product): ferronet's dispatching `gemm` (the in-place AVX-512 kernel where
//! the machine has it), the same product forced through `matrixmultiply`, the `gemm` crate with its
//! own rayon threading, and, where the CPU has AVX512_BF16, `gemm_bf16` (bf16 operands, f32 sums;
//! the operands' conversion included), at 1 and 2 threads.
//!
//!     cargo bench -p ferronet-benches --bench gemm
//!
//! Layouts: `NN` is `A · B` with both row-major (a layer's forward); `TN` is `Aᵀ · B` (a weight
//! gradient: patchesᵀ · dZ); `NT` is `A · Bᵀ` (an input gradient: dZ · Wᵀ).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferronet_core::gemm::{gemm_with, Kernel, MatRef};

/// (m, k, n, layout, what).
const SHAPES: [(usize, usize, usize, &str, &str); 13] = [
    (256, 784, 1024, "NN", "mlp_wide layer 1"),
    (128, 256, 128, "NN", "mlp_mnist layer 2"),
    (784, 256, 1024, "TN", "mlp_wide layer 1 dW"),
    (256, 1024, 1024, "NT", "mlp_wide layer 2 dX"),
    (128, 784, 256, "NN", "mlp_mnist layer 1"),
    (256, 1024, 1024, "NN", "mlp_wide layer 2"),
    (1024, 1024, 1024, "NN", "square"),
    (12544, 288, 64, "NN", "cnn_lenet conv 2"),
    (288, 12544, 64, "TN", "cnn_lenet conv 2 dW"),
    (12544, 64, 288, "NT", "cnn_lenet conv 2 dX"),
    (65536, 288, 32, "NN", "cnn_bn conv 2"),
    (288, 65536, 32, "TN", "cnn_bn conv 2 dW"),
    (16384, 576, 64, "NN", "cnn_bn conv 4"),
];

fn filled(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect()
}

fn bench(c: &mut Criterion) {
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut group = c.benchmark_group(format!("gemm_t{threads}"));
        group
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(2));
        for &(m, k, n, layout, _) in &SHAPES {
            let (a, b) = (filled(m * k), filled(k * n));
            let av = if layout == "TN" { MatRef::row_major(&a, k, m).t() } else { MatRef::row_major(&a, m, k) };
            let bv = if layout == "NT" { MatRef::row_major(&b, n, k).t() } else { MatRef::row_major(&b, k, n) };
            let mut out = vec![0.0f32; m * n];
            let id = format!("{m}x{k}x{n}_{layout}");
            group.throughput(Throughput::Elements((2 * m * k * n) as u64));
            for (name, kernel) in [("ferronet", Kernel::get()), ("matrixmultiply", Kernel::MatrixMultiply)] {
                group.bench_function(BenchmarkId::new(name, &id), |bch| {
                    pool.install(|| bch.iter(|| gemm_with(kernel, av, bv, 0.0, &mut out)))
                });
            }
            if ferronet_core::gemm::bf16_native() {
                group.bench_function(BenchmarkId::new("ferronet_bf16", &id), |bch| {
                    pool.install(|| bch.iter(|| ferronet_core::gemm::gemm_bf16(av, bv, 0.0, &mut out)))
                });
            }
            let par = if threads == 1 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
            group.bench_function(BenchmarkId::new("gemm_crate", &id), |bch| {
                pool.install(|| {
                    bch.iter(|| unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            out.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            av.data.as_ptr(),
                            av.cs as isize,
                            av.rs as isize,
                            bv.data.as_ptr(),
                            bv.cs as isize,
                            bv.rs as isize,
                            0.0f32,
                            1.0f32,
                            false,
                            false,
                            false,
                            par,
                        )
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
