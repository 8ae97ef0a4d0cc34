//! An AVX-512 GEMM for narrow `B` (a layer's filters or units): it reads `A` where it lies, with no
//! packing pass. `matrixmultiply` copies all of `A` into panels first, which on the tall im2col
//! matrices of a convolution (`m` in the tens of thousands, `n` = filters) costs as much memory
//! traffic as the product itself.
//!
//! Micro-kernel: a `MR x 32` tile of `C` in 2 MR zmm accumulators; per step of the inner dimension
//! two vector loads from `B` and `MR` scalar broadcasts from `A` (any strides), so `A` may be
//! row-major (forward: patches · W) or transposed (weight gradient: patchesᵀ · dZ). Only a
//! `KC x NC` block of `B` is copied, into 32-wide panels in a per-thread buffer: it is reused by
//! every row tile, and sequential panels spare the TLB the rows of a wide `B`. The inner dimension
//! is blocked (`KC`) so the `A` tile stays in L1 across column tiles, the columns (`NC`) so the
//! packed block of `B` stays in L2.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use super::MatRef;

/// Rows of `C` per micro-tile: 24 accumulators + 2 `B` vectors + 1 broadcast of 32 registers.
pub const MR: usize = 12;
/// Columns of `C` per micro-tile: two zmm vectors.
pub const NR: usize = 32;
const KC: usize = 384;
const NC: usize = 256;

thread_local! {
    /// The packed block of `B`: grown once per thread to `KC x NC`, then reused by every call.
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

// The packed panels of `B` are `super::PANEL` wide: one micro-tile's columns.
const _: () = assert!(NR == super::PANEL);

/// Calls `$call` with the const `$r` equal to the runtime row count `$mr` (1..=MR): each row count
/// gets its own fully unrolled micro-kernel.
macro_rules! with_rows {
    ($mr:expr, $r:ident => $call:expr) => {
        match $mr {
            12 => {
                const $r: usize = 12;
                $call
            }
            11 => {
                const $r: usize = 11;
                $call
            }
            10 => {
                const $r: usize = 10;
                $call
            }
            9 => {
                const $r: usize = 9;
                $call
            }
            8 => {
                const $r: usize = 8;
                $call
            }
            7 => {
                const $r: usize = 7;
                $call
            }
            6 => {
                const $r: usize = 6;
                $call
            }
            5 => {
                const $r: usize = 5;
                $call
            }
            4 => {
                const $r: usize = 4;
                $call
            }
            3 => {
                const $r: usize = 3;
                $call
            }
            2 => {
                const $r: usize = 2;
                $call
            }
            _ => {
                const $r: usize = 1;
                $call
            }
        }
    };
}

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `C[rows, cols] = A[rows, :] · B[:, cols] + beta C[rows, cols]`.
///
/// # Safety
/// AVX-512F must be available; `c` points to a row-major buffer with row stride
/// `ldc` covering the panel, which no other thread touches; the views are in bounds.
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
    let k = a.cols;
    let blocks = k.div_ceil(KC);
    let kc = k.div_ceil(blocks); // balanced blocks: 576 -> 2 x 288, not 512 + 64
    let ap = a.data.as_ptr();
    PACKED_B.with_borrow_mut(|packed| {
        if packed.len() < KC * NC {
            packed.resize(KC * NC, 0.0);
        }
        let mut p0 = 0;
        while p0 < k {
            let depth = kc.min(k - p0);
            // The first block applies beta; the others accumulate.
            let first = p0 == 0;
            let mut j0 = cols.start;
            while j0 < cols.end {
                let nc = NC.min(cols.end - j0);
                super::pack_block(b, (p0, depth), (j0, nc), packed);
                let bp = packed.as_ptr();
                let mut i = rows.start;
                while i < rows.end {
                    let mr = MR.min(rows.end - i);
                    let mut j = j0;
                    while j < j0 + nc {
                        let width = NR.min(j0 + nc - j);
                        // SAFETY: every index stays in the panel and the views, per the contract.
                        unsafe {
                            let at = ap.add(i * a.rs + p0 * a.cs);
                            let bt = bp.add((j - j0) * depth);
                            let ct = c.add(i * ldc + j);
                            let t = Tile { a: at, a_rs: a.rs, a_cs: a.cs, b: bt, depth, c: ct, ldc, width };
                            with_rows!(mr, R => t.run::<R>(first, beta))
                        }
                        j += NR;
                    }
                    i += MR;
                }
                j0 += nc;
            }
            p0 += depth;
        }
    });
}

/// One micro-tile's operands: `R x width` of `C` over `depth` steps of the inner dimension.
struct Tile {
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    /// A packed panel: `depth` rows of `NR` values.
    b: *const f32,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
}

impl Tile {
    /// Masks for the two column vectors: a partial tile loads and stores only its columns.
    fn masks(&self) -> (__mmask16, __mmask16) {
        let m0 = if self.width >= 16 { 0xFFFF } else { (1u16 << self.width) - 1 };
        let m1 = match self.width {
            w if w >= 32 => 0xFFFF,
            w if w > 16 => (1u16 << (w - 16)) - 1,
            _ => 0,
        };
        (m0, m1)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn run<const R: usize>(&self, first: bool, beta: f32) {
        let (m0, m1) = self.masks();
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        // SAFETY: the caller's contract covers every address formed here.
        unsafe {
            for p in 0..self.depth {
                let brow = self.b.add(p * NR);
                let b0 = _mm512_loadu_ps(brow);
                let b1 = _mm512_loadu_ps(brow.add(16));
                let acol = self.a.add(p * self.a_cs);
                for r in 0..R {
                    let av = _mm512_set1_ps(*acol.add(r * self.a_rs));
                    acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                }
            }
            let keep = if first { beta } else { 1.0 };
            for r in 0..R {
                let crow = self.c.add(r * self.ldc);
                let (mut v0, mut v1) = (acc0[r], acc1[r]);
                // beta = 0 overwrites without reading C (which may hold anything), as in BLAS.
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
}

/// `C[i, :] (+)= sum_s sum_t A[i rs + offsets[s] + t cs] Bp[s seg_len + t, :]` for `i < rows`: a
/// GEMM whose inner dimension is a list of equal segments, each at its own offset in `A`. With
/// `A` a zero-padded image and one segment per kernel cell, this is a convolution with no im2col
/// matrix (implicit GEMM). `Bp` is packed by [`super::pack_panels`] or [`super::pack_block`]; `C` is overwritten, or added
/// to with `accumulate`.
///
/// # Safety
/// AVX-512F must be available, and every address formed lies in the buffers (checked by the
/// safe wrapper [`super::segmented`]).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn segmented(
    a: *const f32,
    (rs, cs): (usize, usize),
    offsets: &[usize],
    seg_len: usize,
    rows: usize,
    packed: *const f32,
    n: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let depth = offsets.len() * seg_len;
    let mut i = 0;
    while i < rows {
        let mr = MR.min(rows - i);
        let mut j = 0;
        while j < n {
            // SAFETY: per the contract.
            unsafe {
                let t = Tile {
                    a: a.add(i * rs),
                    a_rs: rs,
                    a_cs: cs,
                    b: packed.add(j * depth),
                    depth,
                    c: c.add(i * ldc + j),
                    ldc,
                    width: NR.min(n - j),
                };
                with_rows!(mr, R => t.run_segments::<R>(offsets, seg_len, accumulate));
            }
            j += NR;
        }
        i += MR;
    }
}

impl Tile {
    /// [`Tile::run`] over segmented `A`, overwriting `C` or adding to it.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn run_segments<const R: usize>(&self, offsets: &[usize], seg_len: usize, accumulate: bool) {
        let (m0, m1) = self.masks();
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        // SAFETY: the caller's contract covers every address formed here.
        unsafe {
            let mut brow = self.b;
            for &off in offsets {
                let seg = self.a.add(off);
                for t in 0..seg_len {
                    let b0 = _mm512_loadu_ps(brow);
                    let b1 = _mm512_loadu_ps(brow.add(16));
                    brow = brow.add(NR);
                    for r in 0..R {
                        let av = _mm512_set1_ps(*seg.add(r * self.a_rs + t * self.a_cs));
                        acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                        acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
                    }
                }
            }
            for r in 0..R {
                let crow = self.c.add(r * self.ldc);
                let (mut v0, mut v1) = (acc0[r], acc1[r]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, crow));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, crow.add(16)));
                }
                _mm512_mask_storeu_ps(crow, m0, v0);
                _mm512_mask_storeu_ps(crow.add(16), m1, v1);
            }
        }
    }
}
