//! Wider SIMD for element-wise loops, chosen at run time (the wheel targets baseline x86-64, so
//! plain loops compile to 4-wide SSE2). Used by the optimizer sweeps, where it pays (below);
//! activations, pooling and batch normalization measured no faster end to end with it.
//!
//! [`wide`] runs a closure inside a function compiled for AVX2 + FMA when the CPU has them. The
//! closure is inlined there (each instantiation has a single call site), so its loops are
//! vectorised 8-wide; otherwise it runs as compiled. No floating-point contraction or
//! reassociation is enabled, so both paths give bit-identical results.
//!
//! Why not 512-bit here (the GEMM kernels are AVX-512): on the AMD Zen 4 benchmark machine the
//! 512-bit build of the Adam sweep ran the MLP benchmark 6% slower than the 256-bit one (its
//! `vsqrtps zmm` took 60% of the sweep), while the 256-bit one was 1.45x faster than SSE2 on 1M
//! parameters (`cargo bench -p ferronet-benches --bench optimizer`).

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Avx2,
    Baseline,
}

static LEVEL: OnceLock<Level> = OnceLock::new();

/// The level used on this CPU (`FERRONET_SIMD=baseline` forces the portable path, to compare).
pub fn level() -> Level {
    *LEVEL.get_or_init(|| {
        if std::env::var("FERRONET_SIMD").is_ok_and(|v| v == "baseline") {
            return Level::Baseline;
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
        Level::Baseline
    })
}

/// Runs `f` compiled for the widest SIMD level in use.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx2 {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
