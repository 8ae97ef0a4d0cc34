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

    vector_ops!(
        "avx2,fma",
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps,
        load_masked(p, m) = _mm256_maskload_ps(p, m),
        store_masked(p, m, v) = _mm256_maskstore_ps(p, m, v)
    );

    /// All ones in the lanes below `width`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn mask(width: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(width.min(8) as i32), lanes)
    }
}

micro_kernel!(Avx2, Ymm, "avx2,fma", MR = 6, KC = 384, NC = 128, rows = [6 5 4 3 2 1]);

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Packs `width <= PANEL` columns of a column-major block into one panel: column `q` holds
/// `b[first + q cs ..][..k]`, and lands at `panel[p PANEL + q]`. Blocks of 8 x 8 are transposed
/// in registers; the edges are copied one value at a time.
///
/// Panics if `b` is too short or `panel` shorter than `k` panel rows.
pub fn pack_columns(b: &[f32], (first, cs): (usize, usize), k: usize, width: usize, panel: &mut [f32]) {
    use super::PANEL;
    assert!(width <= PANEL && panel.len() >= k * PANEL, "pack_columns: panel too short");
    if width == 0 || k == 0 {
        return;
    }
    assert!(first + (width - 1) * cs + k <= b.len(), "pack_columns: B too short");
    // The columns and rows the 8 x 8 blocks cover (none without AVX2).
    let (full_q, full_p) = if available() { (width / 8 * 8, k / 8 * 8) } else { (0, 0) };
    for q in (0..full_q).step_by(8) {
        for p in (0..full_p).step_by(8) {
            // SAFETY: AVX is available; the 8 columns' 8 values and the 8 panel rows' 8
            // slots lie in the buffers checked above.
            unsafe { transpose_8x8(b.as_ptr().add(first + q * cs + p), cs, panel.as_mut_ptr().add(p * PANEL + q)) };
        }
    }
    for q in 0..width {
        let p0 = if q < full_q { full_p } else { 0 };
        for (p, &v) in b[first + q * cs..][..k].iter().enumerate().skip(p0) {
            panel[p * PANEL + q] = v;
        }
    }
}

/// `dst[r PANEL + c] = src[c stride + r]` for `r, c < 8`: eight rows of eight values from eight
/// columns (unpack pairs, then quads, then swap 128-bit halves).
///
/// # Safety
/// AVX is available; the 8 columns of 8 values and the 8 destination rows are in bounds.
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(src: *const f32, stride: usize, dst: *mut f32) {
    use super::PANEL;
    // SAFETY: the caller's contract.
    unsafe {
        let column = |i: usize| src.add(i * stride);
        let c = [
            _mm256_loadu_ps(column(0)),
            _mm256_loadu_ps(column(1)),
            _mm256_loadu_ps(column(2)),
            _mm256_loadu_ps(column(3)),
            _mm256_loadu_ps(column(4)),
            _mm256_loadu_ps(column(5)),
            _mm256_loadu_ps(column(6)),
            _mm256_loadu_ps(column(7)),
        ];
        let lo01 = _mm256_unpacklo_ps(c[0], c[1]);
        let hi01 = _mm256_unpackhi_ps(c[0], c[1]);
        let lo23 = _mm256_unpacklo_ps(c[2], c[3]);
        let hi23 = _mm256_unpackhi_ps(c[2], c[3]);
        let lo45 = _mm256_unpacklo_ps(c[4], c[5]);
        let hi45 = _mm256_unpackhi_ps(c[4], c[5]);
        let lo67 = _mm256_unpacklo_ps(c[6], c[7]);
        let hi67 = _mm256_unpackhi_ps(c[6], c[7]);
        let q0 = _mm256_shuffle_ps::<0x44>(lo01, lo23);
        let q1 = _mm256_shuffle_ps::<0xEE>(lo01, lo23);
        let q2 = _mm256_shuffle_ps::<0x44>(hi01, hi23);
        let q3 = _mm256_shuffle_ps::<0xEE>(hi01, hi23);
        let q4 = _mm256_shuffle_ps::<0x44>(lo45, lo67);
        let q5 = _mm256_shuffle_ps::<0xEE>(lo45, lo67);
        let q6 = _mm256_shuffle_ps::<0x44>(hi45, hi67);
        let q7 = _mm256_shuffle_ps::<0xEE>(hi45, hi67);
        let rows = [
            _mm256_permute2f128_ps::<0x20>(q0, q4),
            _mm256_permute2f128_ps::<0x20>(q1, q5),
            _mm256_permute2f128_ps::<0x20>(q2, q6),
            _mm256_permute2f128_ps::<0x20>(q3, q7),
            _mm256_permute2f128_ps::<0x31>(q0, q4),
            _mm256_permute2f128_ps::<0x31>(q1, q5),
            _mm256_permute2f128_ps::<0x31>(q2, q6),
            _mm256_permute2f128_ps::<0x31>(q3, q7),
        ];
        for (r, row) in rows.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(r * PANEL), row);
        }
    }
}
