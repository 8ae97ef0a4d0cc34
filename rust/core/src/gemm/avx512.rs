//! The AVX-512 kernel family of the in-place GEMMs (`tiled.rs`): `12 x 32` tiles of `C` in 24 zmm
//! accumulators, plus 2 `B` vectors and 1 broadcast of the 32 registers. Partial tiles use mask
//! registers.

use std::arch::x86_64::*;
use std::ops::Range;

use super::tiled::{micro_kernel, vector_ops, Vector};
use super::{MatRef, Out, Segments};

/// One zmm register of 16 lanes.
#[derive(Clone, Copy)]
pub struct Zmm(pub(super) __m512);

impl Vector for Zmm {
    const LANES: usize = 16;
    type Mask = __mmask16;

    vector_ops!(
        "avx512f",
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps,
        load_masked(p, m) = _mm512_maskz_loadu_ps(m, p),
        store_masked(p, m, v) = _mm512_mask_storeu_ps(p, m, v)
    );

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn mask(width: usize) -> __mmask16 {
        if width >= 16 {
            0xFFFF
        } else {
            (1u16 << width) - 1
        }
    }
}

micro_kernel!(Avx512, Zmm, "avx512f", MR = 12, KC = 384, NC = 256, rows = [12 11 10 9 8 7 6 5 4 3 2 1]);

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}
