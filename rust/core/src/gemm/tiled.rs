//! The blocked loops of the in-place GEMMs, shared by every vector width: they read `A` where it
//! lies, with no packing pass, and walk `C` in micro-tiles that a [`MicroKernel`] computes.
//! `matrixmultiply` copies all of `A` into panels first, which on the tall im2col matrices of a
//! convolution (`m` in the tens of thousands, `n` = filters) costs as much memory traffic as the
//! product itself.
//!
//! Only a `KC x NC` block of `B` is copied, into [`PANEL`]-wide panels in a per-thread buffer: it is
//! reused by every row tile, and sequential panels spare the TLB the rows of a wide `B`. The inner
//! dimension is blocked (`KC`) so the `A` tile stays in L1 across column tiles, the columns (`NC`)
//! so the packed block of `B` stays in L2. A micro-kernel narrower than a panel reads a part of
//! it: its rows are still `PANEL` apart.

use std::cell::RefCell;
use std::ops::Range;

use super::{MatRef, PANEL};

/// Calls `$call` with the const `$r` equal to the runtime row count `$mr`, one of the listed
/// counts: each row count gets its own fully unrolled micro-kernel.
macro_rules! with_rows {
    ($mr:expr, $r:ident => $call:expr; $($n:literal)+) => {
        match $mr {
            $($n => {
                const $r: usize = $n;
                $call
            })+
            rows => unreachable!("a micro-tile of {rows} rows"),
        }
    };
}
pub(super) use with_rows;

thread_local! {
    /// The packed block of `B`: grown once per thread to `KC x NC`, then reused by every call.
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// One micro-tile's operands: `rows x width` of `C` over `depth` steps of the inner dimension.
pub(super) struct Tile {
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    /// Inside a packed panel: `depth` rows, [`PANEL`] values apart.
    pub b: *const f32,
    pub depth: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// Columns of `C` this tile covers (at most [`MicroKernel::NR`]).
    pub width: usize,
}

/// A register-blocked kernel for one micro-tile of `C`, at one vector width.
pub(super) trait MicroKernel {
    /// Rows of `C` per tile (accumulators of a column vector each).
    const MR: usize;
    /// Columns of `C` per tile; divides [`PANEL`].
    const NR: usize;
    /// Depth and width of the packed block of `B`.
    const KC: usize;
    const NC: usize;

    /// `C = A B + keep C` on the tile's first `rows` rows, with `keep = beta` on the first inner
    /// block (`first`) and 1 after; `keep = 0` writes without reading `C`, as in BLAS.
    ///
    /// # Safety
    /// The CPU has the kernel's instructions; every address the tile forms is in bounds.
    unsafe fn tile(t: &Tile, rows: usize, first: bool, beta: f32);

    /// `C (+)= sum_s sum_t A[r rs + offsets[s] + t cs] B[s seg_len + t, :]` on the tile's rows
    /// (an implicit GEMM over segments of `A`), overwriting `C` or adding to it.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`].
    unsafe fn tile_segments(t: &Tile, rows: usize, offsets: &[usize], seg_len: usize, accumulate: bool);
}

/// Where the tile at column `j` of a packed block starts: its panel, then its place in the panel.
fn panel_start(j: usize, depth: usize) -> usize {
    j / PANEL * PANEL * depth + j % PANEL
}

/// `C[rows, cols] = A[rows, :] · B[:, cols] + beta C[rows, cols]` with kernel `K`.
///
/// # Safety
/// `K`'s instructions are available; `c` points to a row-major buffer with row stride `ldc`
/// covering the panel, which no other thread touches; the views are in bounds.
#[inline(always)]
pub(super) unsafe fn panel<K: MicroKernel>(
    a: MatRef<'_>,
    b: MatRef<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    let k = a.cols;
    let blocks = k.div_ceil(K::KC);
    let kc = k.div_ceil(blocks); // balanced blocks: 576 -> 2 x 288, not 512 + 64
    let ap = a.data.as_ptr();
    PACKED_B.with_borrow_mut(|packed| {
        if packed.len() < K::KC * K::NC {
            packed.resize(K::KC * K::NC, 0.0);
        }
        let mut p0 = 0;
        while p0 < k {
            let depth = kc.min(k - p0);
            // The first block applies beta; the others accumulate.
            let first = p0 == 0;
            let mut j0 = cols.start;
            while j0 < cols.end {
                let nc = K::NC.min(cols.end - j0);
                super::pack_block(b, (p0, depth), (j0, nc), packed);
                let bp = packed.as_ptr();
                let mut i = rows.start;
                while i < rows.end {
                    let mr = K::MR.min(rows.end - i);
                    let mut j = j0;
                    while j < j0 + nc {
                        // SAFETY: every index stays in the panel and the views, per the contract.
                        unsafe {
                            let t = Tile {
                                a: ap.add(i * a.rs + p0 * a.cs),
                                a_rs: a.rs,
                                a_cs: a.cs,
                                b: bp.add(panel_start(j - j0, depth)),
                                depth,
                                c: c.add(i * ldc + j),
                                ldc,
                                width: K::NR.min(j0 + nc - j),
                            };
                            K::tile(&t, mr, first, beta);
                        }
                        j += K::NR;
                    }
                    i += K::MR;
                }
                j0 += nc;
            }
            p0 += depth;
        }
    });
}

/// `C[i, :] (+)= sum_s sum_t A[i rs + offsets[s] + t cs] Bp[s seg_len + t, :]` for `i < rows`: a
/// GEMM whose inner dimension is a list of equal segments, each at its own offset in `A`. With
/// `A` a zero-padded image and one segment per kernel row, this is a convolution with no im2col
/// matrix (implicit GEMM). `Bp` is packed by [`super::pack_panels`] or [`super::pack_block`];
/// `C` is overwritten, or added to with `accumulate`.
///
/// # Safety
/// `K`'s instructions are available, and every address formed lies in the buffers (checked by
/// the safe wrapper [`super::segmented`]).
#[inline(always)]
pub(super) unsafe fn segmented<K: MicroKernel>(
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
        let mr = K::MR.min(rows - i);
        let mut j = 0;
        while j < n {
            // SAFETY: per the contract.
            unsafe {
                let t = Tile {
                    a: a.add(i * rs),
                    a_rs: rs,
                    a_cs: cs,
                    b: packed.add(panel_start(j, depth)),
                    depth,
                    c: c.add(i * ldc + j),
                    ldc,
                    width: K::NR.min(n - j),
                };
                K::tile_segments(&t, mr, offsets, seg_len, accumulate);
            }
            j += K::NR;
        }
        i += K::MR;
    }
}
