//! The AVX-512 micro-kernel of the in-place GEMMs (`tiled.rs`): a `MR x 32` tile of `C` in
//! `2 MR` zmm accumulators; per step of the inner dimension two vector loads from `B` and `MR`
//! scalar broadcasts from `A` (any strides), so `A` may be row-major (forward: patches · W) or
//! transposed (weight gradient: patchesᵀ · dZ).

use std::arch::x86_64::*;
use std::ops::Range;

use super::tiled::{self, with_rows, MicroKernel, Tile};
use super::MatRef;

/// The AVX-512 kernel family.
pub struct Avx512;

impl MicroKernel for Avx512 {
    /// 24 accumulators + 2 `B` vectors + 1 broadcast of 32 registers.
    const MR: usize = 12;
    /// Two zmm vectors: one packed panel.
    const NR: usize = 32;
    const KC: usize = 384;
    const NC: usize = 256;

    #[inline(always)]
    unsafe fn tile(t: &Tile, rows: usize, first: bool, beta: f32) {
        // SAFETY: the caller's contract.
        unsafe { with_rows!(rows, R => run::<R>(t, first, beta); 12 11 10 9 8 7 6 5 4 3 2 1) }
    }

    #[inline(always)]
    unsafe fn tile_segments(t: &Tile, rows: usize, offsets: &[usize], seg_len: usize, accumulate: bool) {
        // SAFETY: the caller's contract.
        unsafe { with_rows!(rows, R => run_segments::<R>(t, offsets, seg_len, accumulate); 12 11 10 9 8 7 6 5 4 3 2 1) }
    }
}

// The tile is one packed panel wide.
const _: () = assert!(Avx512::NR == super::PANEL);

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// [`tiled::panel`] with the AVX-512 kernel.
///
/// # Safety
/// AVX-512F must be available; the rest is [`tiled::panel`]'s contract.
#[target_feature(enable = "avx512f")]
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
    unsafe { tiled::panel::<Avx512>(a, b, rows, cols, beta, c, ldc) }
}

/// [`tiled::segmented`] with the AVX-512 kernel.
///
/// # Safety
/// AVX-512F must be available; the rest is [`tiled::segmented`]'s contract.
#[target_feature(enable = "avx512f")]
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
    unsafe { tiled::segmented::<Avx512>(a, strides, offsets, seg_len, rows, packed, n, c, ldc, accumulate) }
}

/// Masks for the two column vectors: a partial tile loads and stores only its columns.
fn masks(width: usize) -> (__mmask16, __mmask16) {
    let m0 = if width >= 16 { 0xFFFF } else { (1u16 << width) - 1 };
    let m1 = match width {
        w if w >= 32 => 0xFFFF,
        w if w > 16 => (1u16 << (w - 16)) - 1,
        _ => 0,
    };
    (m0, m1)
}

/// Writes the accumulators of `R` rows to `C`: `C = acc + keep C`, where `keep = 0` writes
/// without reading `C` (which may hold anything), as in BLAS.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const R: usize>(t: &Tile, acc0: &[__m512; R], acc1: &[__m512; R], keep: f32) {
    let (m0, m1) = masks(t.width);
    // SAFETY: the caller's contract covers the tile's rows and columns of C.
    unsafe {
        for r in 0..R {
            let crow = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (acc0[r], acc1[r]);
            if keep != 0.0 {
                let k = _mm512_set1_ps(keep);
                v0 = _mm512_fmadd_ps(k, _mm512_maskz_loadu_ps(m0, crow), v0);
                v1 = _mm512_fmadd_ps(k, _mm512_maskz_loadu_ps(m1, crow.add(16)), v1);
            }
            _mm512_mask_storeu_ps(crow, m0, v0);
            _mm512_mask_storeu_ps(crow.add(16), m1, v1);
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn run<const R: usize>(t: &Tile, first: bool, beta: f32) {
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        for p in 0..t.depth {
            let brow = t.b.add(p * super::PANEL);
            let b0 = _mm512_loadu_ps(brow);
            let b1 = _mm512_loadu_ps(brow.add(16));
            let acol = t.a.add(p * t.a_cs);
            for r in 0..R {
                let av = _mm512_set1_ps(*acol.add(r * t.a_rs));
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
        store(t, &acc0, &acc1, if first { beta } else { 1.0 });
    }
}

/// [`run`] over segmented `A`, overwriting `C` or adding to it.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn run_segments<const R: usize>(t: &Tile, offsets: &[usize], seg_len: usize, accumulate: bool) {
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let mut brow = t.b;
        for &off in offsets {
            let seg = t.a.add(off);
            for s in 0..seg_len {
                let b0 = _mm512_loadu_ps(brow);
                let b1 = _mm512_loadu_ps(brow.add(16));
                brow = brow.add(super::PANEL);
                for r in 0..R {
                    let av = _mm512_set1_ps(*seg.add(r * t.a_rs + s * t.a_cs));
                    acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                }
            }
        }
        store(t, &acc0, &acc1, if accumulate { 1.0 } else { 0.0 });
    }
}
