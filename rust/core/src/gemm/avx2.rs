//! The AVX2 + FMA kernel family of the in-place GEMMs (`tiled.rs`), for x86-64 CPUs without
//! AVX-512 (Zen 2 and 3, Intel client cores): `6 x 16` tiles of `C` in 12 ymm accumulators, plus
//! 2 `B` vectors (half a packed panel) and 1 broadcast of the 16 registers. Partial tiles use
//! lane masks (`vmaskmovps`), which neither read nor fault on masked-off lanes. The `B` block is
//! 384 x 128 (192 KiB), to fit the 256 KiB L2 of Intel client cores.

use std::arch::x86_64::*;
use std::ops::Range;

use super::tiled::{micro_kernel, vector_ops, Vector};
use super::{MatRef, Out, Segments};

/// One ymm register of 8 lanes.
#[derive(Clone, Copy)]
pub struct Ymm(__m256);

impl Vector for Ymm {
    const LANES: usize = 8;
    type Mask = __m256i;

    vector_ops!("avx2,fma", _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps);

    /// All ones in the lanes below `width`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn mask(width: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(width.min(8) as i32), lanes)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load_masked(p: *const f32, m: __m256i) -> Self {
        // SAFETY: the caller's contract; masked-off lanes are not accessed.
        Self(unsafe { _mm256_maskload_ps(p, m) })
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_masked(self, p: *mut f32, m: __m256i) {
        // SAFETY: the caller's contract; masked-off lanes are not accessed.
        unsafe { _mm256_maskstore_ps(p, m, self.0) }
    }
}

micro_kernel!(Avx2, Ymm, "avx2,fma", MR = 6, KC = 384, NC = 128, rows = [6 5 4 3 2 1]);

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}
