//! GEMM candidates on the shapes of the MLP benchmark (784-256-128-10, batch 128) and two large
//! shapes: ferronet's threaded `matrixmultiply` wrapper, the `gemm` crate with its own rayon
//! threading, and ndarray's `dot` (single-threaded `matrixmultiply`). Throughput is in FLOP/s
//! (criterion reports it as elements/s: 2 m k n per product).
//!
//!     cargo bench -p ferronet-benches --bench gemm

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferronet_core::gemm::{gemm as ferronet_gemm, MatRef};
use ndarray::Array2;

const SHAPES: [(usize, usize, usize); 6] =
    [(128, 784, 256), (784, 128, 256), (128, 256, 128), (256, 128, 128), (256, 1024, 1024), (1024, 1024, 1024)];

fn filled(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect()
}

fn bench(c: &mut Criterion) {
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut group = c.benchmark_group(format!("gemm_t{threads}"));
        group.sample_size(20);
        for &(m, k, n) in &SHAPES {
            let (a, b) = (filled(m * k), filled(k * n));
            let mut out = vec![0.0f32; m * n];
            let id = format!("{m}x{k}x{n}");
            group.throughput(Throughput::Elements((2 * m * k * n) as u64));
            group.bench_function(BenchmarkId::new("ferronet_matrixmultiply", &id), |bch| {
                pool.install(|| {
                    bch.iter(|| ferronet_gemm(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 0.0, &mut out))
                })
            });
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
                            a.as_ptr(),
                            1,
                            k as isize,
                            b.as_ptr(),
                            1,
                            n as isize,
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
            if threads == 1 {
                let (aa, bb) = (
                    Array2::from_shape_vec((m, k), a.clone()).unwrap(),
                    Array2::from_shape_vec((k, n), b.clone()).unwrap(),
                );
                group.bench_function(BenchmarkId::new("ndarray_dot", &id), |bch| bch.iter(|| aa.dot(&bb)));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
