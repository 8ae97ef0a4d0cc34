//! The AVX2 + FMA micro-kernel of the in-place GEMMs (`tiled.rs`), for x86-64 CPUs without
//! AVX-512 (Zen 2 and 3, Intel client cores): a `6 x 16` tile of `C` in 12 ymm accumulators; per
//! step of the inner dimension two vector loads from `B` (half a packed panel) and six scalar
//! broadcasts from `A`, any strides. 12 accumulators + 2 `B` vectors + 1 broadcast of the 16
//! registers.

use std::arch::x86_64::*;
use std::ops::Range;

use super::tiled::{self, with_rows, MicroKernel, Tile};
use super::MatRef;

/// The AVX2 + FMA kernel family.
pub struct Avx2;

impl MicroKernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    const KC: usize = 384;
    /// A block of `B` of 384 x 128 (192 KiB) fits the 256 KiB L2 of Intel client cores.
    const NC: usize = 128;

    #[inline(always)]
    unsafe fn tile(t: &Tile, rows: usize, first: bool, beta: f32) {
        // SAFETY: the caller's contract.
        unsafe { with_rows!(rows, R => run::<R>(t, first, beta); 6 5 4 3 2 1) }
    }

    #[inline(always)]
    unsafe fn tile_segments(t: &Tile, rows: usize, offsets: &[usize], seg_len: usize, accumulate: bool) {
        // SAFETY: the caller's contract.
        unsafe { with_rows!(rows, R => run_segments::<R>(t, offsets, seg_len, accumulate); 6 5 4 3 2 1) }
    }
}

// Two tiles per packed panel.
const _: () = assert!(super::PANEL.is_multiple_of(Avx2::NR));

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// [`tiled::panel`] with the AVX2 kernel.
///
/// # Safety
/// AVX2 and FMA must be available; the rest is [`tiled::panel`]'s contract.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn panel(
    a: MatRef<'_>,
    b: MatRef<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { tiled::panel::<Avx2>(a, b, rows, cols, beta, c, ldc) }
}

/// [`tiled::segmented`] with the AVX2 kernel.
///
/// # Safety
/// AVX2 and FMA must be available; the rest is [`tiled::segmented`]'s contract.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn segmented(
    a: *const f32,
    strides: (usize, usize),
    offsets: &[usize],
    seg_len: usize,
    rows: usize,
    packed: *const f32,
    n: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract.
    unsafe { tiled::segmented::<Avx2>(a, strides, offsets, seg_len, rows, packed, n, c, ldc, accumulate) }
}

/// Lane masks for the two column vectors: a partial tile loads and stores only its columns.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn masks(width: usize) -> (__m256i, __m256i) {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let w = width.min(Avx2::NR) as i32;
    (_mm256_cmpgt_epi32(_mm256_set1_epi32(w), lanes), _mm256_cmpgt_epi32(_mm256_set1_epi32(w - 8), lanes))
}

/// Writes the accumulators of `R` rows to `C`: `C = acc + keep C`, where `keep = 0` writes
/// without reading `C` (which may hold anything), as in BLAS.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store<const R: usize>(t: &Tile, acc0: &[__m256; R], acc1: &[__m256; R], keep: f32) {
    let (m0, m1) = masks(t.width);
    let full = t.width >= Avx2::NR;
    // SAFETY: the caller's contract covers the tile's rows and columns of C; masked lanes are
    // neither read nor written.
    unsafe {
        for r in 0..R {
            let crow = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (acc0[r], acc1[r]);
            if keep != 0.0 {
                let k = _mm256_set1_ps(keep);
                let (c0, c1) = if full {
                    (_mm256_loadu_ps(crow), _mm256_loadu_ps(crow.add(8)))
                } else {
                    (_mm256_maskload_ps(crow, m0), _mm256_maskload_ps(crow.add(8), m1))
                };
                v0 = _mm256_fmadd_ps(k, c0, v0);
                v1 = _mm256_fmadd_ps(k, c1, v1);
            }
            if full {
                _mm256_storeu_ps(crow, v0);
                _mm256_storeu_ps(crow.add(8), v1);
            } else {
                _mm256_maskstore_ps(crow, m0, v0);
                _mm256_maskstore_ps(crow.add(8), m1, v1);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run<const R: usize>(t: &Tile, first: bool, beta: f32) {
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        for p in 0..t.depth {
            let brow = t.b.add(p * super::PANEL);
            let b0 = _mm256_loadu_ps(brow);
            let b1 = _mm256_loadu_ps(brow.add(8));
            let acol = t.a.add(p * t.a_cs);
            for r in 0..R {
                let av = _mm256_set1_ps(*acol.add(r * t.a_rs));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
        }
        store(t, &acc0, &acc1, if first { beta } else { 1.0 });
    }
}

/// [`run`] over segmented `A`, overwriting `C` or adding to it.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run_segments<const R: usize>(t: &Tile, offsets: &[usize], seg_len: usize, accumulate: bool) {
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let mut brow = t.b;
        for &off in offsets {
            let seg = t.a.add(off);
            for s in 0..seg_len {
                let b0 = _mm256_loadu_ps(brow);
                let b1 = _mm256_loadu_ps(brow.add(8));
                brow = brow.add(super::PANEL);
                for r in 0..R {
                    let av = _mm256_set1_ps(*seg.add(r * t.a_rs + s * t.a_cs));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
            }
        }
        store(t, &acc0, &acc1, if accumulate { 1.0 } else { 0.0 });
    }
}
