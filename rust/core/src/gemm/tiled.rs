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

use super::{MatRef, Out, Segments, PANEL};

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
    /// A copy of one row tile of `A`, for row strides that alias in L1 ([`aliases_in_l1`]).
    static A_TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Sets of an x86 L1 data cache: 64 on every current core (32 KiB 8-way, 48 KiB 12-way), since
/// the set index must come from the 4 KiB page offset. Lines 4 KiB apart share a set.
const L1_SETS: usize = 64;
const LINE_FLOATS: usize = 16;

/// Whether `rows` rows of `A`, `rs` floats apart, crowd one L1 set with more lines than half an
/// 8-way set holds: a row-major `A` with 1024 columns puts all 12 rows of a tile in one set, so
/// its lines evict each other before their 16 floats are read, and every broadcast waits on L2.
pub(super) fn aliases_in_l1(rows: usize, rs: usize) -> bool {
    let mut per_set = [0u8; L1_SETS];
    (0..rows).any(|r| {
        let set = &mut per_set[r * rs / LINE_FLOATS % L1_SETS];
        *set += 1;
        *set > 4
    })
}

/// Row stride of the copied `A` tile: at least `depth`, and an odd number of cache lines, so
/// consecutive rows fall in distinct sets.
fn skewed_stride(depth: usize) -> usize {
    (depth.div_ceil(LINE_FLOATS) | 1) * LINE_FLOATS
}

/// One micro-tile's operands: `rows x width` of `C` over `depth` steps of the inner dimension
/// (pairs of steps in the bf16 kernel, whose `a` and `b` point at 32-bit pairs).
pub(super) struct Tile {
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    /// Inside a packed panel: `depth` rows, [`PANEL`] values apart.
    pub b: *const f32,
    pub depth: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// Columns of `C` this tile covers (at most two vectors).
    pub width: usize,
}

/// One SIMD register of `f32` lanes and the operations the micro-kernel uses. Implementations
/// wrap intrinsics in `#[target_feature]` + `#[inline]` methods: inlined into the entry points
/// `micro_kernel!` compiles for the same instructions, each becomes one instruction. (Generic
/// code between them is `#[inline(always)]` and holds no closure, which would not inherit the
/// entry point's features.)
pub(super) trait Vector: Copy {
    const LANES: usize;
    /// Which lanes a partial load or store touches.
    type Mask: Copy;

    /// # Safety (every method)
    /// The CPU has the instructions; pointers are valid for the lanes touched.
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a b + c`, rounded once.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// The first `width` lanes (all when `width >= LANES`, none when 0).
    unsafe fn mask(width: usize) -> Self::Mask;
    /// Masked-off lanes are neither read nor faulted on, and load as 0.
    unsafe fn load_masked(p: *const f32, m: Self::Mask) -> Self;
    unsafe fn store_masked(self, p: *mut f32, m: Self::Mask);
}

/// The [`Vector`] methods that differ between widths only by their intrinsics, compiled for
/// `$features`. The masked load and store are given as calls on the caller's names for the
/// pointer, the mask and (for the store) the register, since the intrinsics order their
/// arguments differently.
macro_rules! vector_ops {
    ($features:literal, $setzero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident,
     load_masked($lp:ident, $lm:ident) = $load_masked:expr,
     store_masked($sp:ident, $sm:ident, $sv:ident) = $store_masked:expr) => {
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn zero() -> Self {
            Self($setzero())
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn splat(x: f32) -> Self {
            Self($set1(x))
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller's contract.
            Self(unsafe { $loadu(p) })
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's contract.
            unsafe { $storeu(p, self.0) }
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Self($fmadd(a.0, b.0, c.0))
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load_masked($lp: *const f32, $lm: Self::Mask) -> Self {
            // SAFETY: the caller's contract; masked-off lanes are not accessed.
            Self(unsafe { $load_masked })
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn store_masked(self, $sp: *mut f32, $sm: Self::Mask) {
            let $sv = self.0;
            // SAFETY: the caller's contract; masked-off lanes are not accessed.
            unsafe { $store_masked }
        }
    };
}
pub(super) use vector_ops;

/// A register-blocked kernel for one micro-tile of `C`: `MR` rows of two vectors `V`.
pub(super) trait MicroKernel {
    type V: Vector;
    /// Rows of `C` per tile (two accumulators each).
    const MR: usize;
    /// Columns of `C` per tile; divides [`PANEL`].
    const NR: usize = 2 * <Self::V as Vector>::LANES;
    /// Depth and width of the packed block of `B`.
    const KC: usize;
    const NC: usize;

    /// [`run`] on the tile's first `rows` rows (`1..=MR`).
    ///
    /// # Safety
    /// As [`run`].
    unsafe fn tile(t: &Tile, rows: usize, first: bool, beta: f32);

    /// [`run_segments`] on the tile's first `rows` rows (`1..=MR`).
    ///
    /// # Safety
    /// As [`run`].
    unsafe fn tile_segments(t: &Tile, rows: usize, a: &Segments<'_>, accumulate: bool);
}

/// Writes the accumulators of `R` rows to `C`: `C = acc + keep C`, where `keep = 0` writes
/// without reading `C` (which may hold anything), as in BLAS. A partial tile touches only its
/// columns.
#[inline(always)]
pub(super) unsafe fn store<V: Vector, const R: usize>(t: &Tile, acc0: &[V; R], acc1: &[V; R], keep: f32) {
    let lanes = V::LANES;
    let full = t.width >= 2 * lanes;
    // SAFETY: the caller's contract covers the tile's rows and columns of C.
    unsafe {
        let (m0, m1) = (V::mask(t.width), V::mask(t.width.saturating_sub(lanes)));
        for r in 0..R {
            let crow = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (acc0[r], acc1[r]);
            if keep != 0.0 {
                let k = V::splat(keep);
                let (c0, c1) = if full {
                    (V::load(crow), V::load(crow.add(lanes)))
                } else {
                    (V::load_masked(crow, m0), V::load_masked(crow.add(lanes), m1))
                };
                v0 = V::fma(k, c0, v0);
                v1 = V::fma(k, c1, v1);
            }
            if full {
                v0.store(crow);
                v1.store(crow.add(lanes));
            } else {
                v0.store_masked(crow, m0);
                v1.store_masked(crow.add(lanes), m1);
            }
        }
    }
}

/// `C = A B + keep C` on `R` rows of a tile, with `keep = beta` on the first inner block
/// (`first`) and 1 after. Per step of the inner dimension: two vector loads from `B` and `R`
/// scalar broadcasts from `A` (any strides), so `A` may be row-major (forward: patches · W) or
/// transposed (weight gradient: patchesᵀ · dZ).
///
/// # Safety
/// The CPU has `V`'s instructions; every address the tile forms is in bounds.
#[inline(always)]
pub(super) unsafe fn run<V: Vector, const R: usize>(t: &Tile, first: bool, beta: f32) {
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let (mut acc0, mut acc1) = ([V::zero(); R], [V::zero(); R]);
        for p in 0..t.depth {
            let brow = t.b.add(p * PANEL);
            let (b0, b1) = (V::load(brow), V::load(brow.add(V::LANES)));
            let acol = t.a.add(p * t.a_cs);
            for r in 0..R {
                let av = V::splat(*acol.add(r * t.a_rs));
                acc0[r] = V::fma(av, b0, acc0[r]);
                acc1[r] = V::fma(av, b1, acc1[r]);
            }
        }
        store(t, &acc0, &acc1, if first { beta } else { 1.0 });
    }
}

/// [`run`] over segmented `A` (the tile's `a` is row 0's origin; `a.offsets` and `a.seg_len`
/// say where each segment starts), overwriting `C` or adding to it.
///
/// # Safety
/// As [`run`].
#[inline(always)]
pub(super) unsafe fn run_segments<V: Vector, const R: usize>(t: &Tile, a: &Segments<'_>, accumulate: bool) {
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let (mut acc0, mut acc1) = ([V::zero(); R], [V::zero(); R]);
        let mut brow = t.b;
        for &off in a.offsets {
            let seg = t.a.add(off);
            for s in 0..a.seg_len {
                let (b0, b1) = (V::load(brow), V::load(brow.add(V::LANES)));
                brow = brow.add(PANEL);
                for r in 0..R {
                    let av = V::splat(*seg.add(r * t.a_rs + s * t.a_cs));
                    acc0[r] = V::fma(av, b0, acc0[r]);
                    acc1[r] = V::fma(av, b1, acc1[r]);
                }
            }
        }
        store(t, &acc0, &acc1, if accumulate { 1.0 } else { 0.0 });
    }
}

/// Declares a kernel family: its `MicroKernel` impl (each row count its own unrolled
/// instance) and its entry points, compiled for `$features`: `panel` ([`panel`]) and
/// `segmented` ([`segmented`]).
macro_rules! micro_kernel {
    ($kernel:ident, $vector:ty, $features:literal, MR = $mr:literal, KC = $kc:literal, NC = $nc:literal,
     rows = [$($rows:literal)+]) => {
        pub struct $kernel;

        impl $crate::gemm::tiled::MicroKernel for $kernel {
            type V = $vector;
            const MR: usize = $mr;
            const KC: usize = $kc;
            const NC: usize = $nc;

            #[inline(always)]
            unsafe fn tile(t: &$crate::gemm::tiled::Tile, rows: usize, first: bool, beta: f32) {
                // SAFETY: the caller's contract.
                unsafe { $crate::gemm::tiled::with_rows!(rows, R => run::<R>(t, first, beta); $($rows)+) }
            }

            #[inline(always)]
            unsafe fn tile_segments(
                t: &$crate::gemm::tiled::Tile,
                rows: usize,
                a: &$crate::gemm::Segments<'_>,
                accumulate: bool,
            ) {
                // SAFETY: the caller's contract.
                unsafe { $crate::gemm::tiled::with_rows!(rows, R => run_segments::<R>(t, a, accumulate); $($rows)+) }
            }
        }

        /// [`tiled::run`](super::tiled::run) compiled for this kernel's instructions, one function
        /// per row count (left to the compiler to inline: twelve copies in one loop crowd it).
        ///
        /// # Safety
        /// As `tiled::run`.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn run<const R: usize>(t: &$crate::gemm::tiled::Tile, first: bool, beta: f32) {
            // SAFETY: the caller's contract.
            unsafe { $crate::gemm::tiled::run::<$vector, R>(t, first, beta) }
        }

        /// [`tiled::run_segments`](super::tiled::run_segments) compiled for this kernel's
        /// instructions.
        ///
        /// # Safety
        /// As `tiled::run`.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn run_segments<const R: usize>(
            t: &$crate::gemm::tiled::Tile,
            a: &$crate::gemm::Segments<'_>,
            accumulate: bool,
        ) {
            // SAFETY: the caller's contract.
            unsafe { $crate::gemm::tiled::run_segments::<$vector, R>(t, a, accumulate) }
        }

        // Whole tiles per packed panel.
        const _: () = assert!($crate::gemm::PANEL.is_multiple_of(<$kernel as $crate::gemm::tiled::MicroKernel>::NR));

        /// [`tiled::panel`](super::tiled::panel) with this kernel.
        ///
        /// # Safety
        /// The CPU has the kernel's instructions; the rest is `tiled::panel`'s contract.
        #[target_feature(enable = $features)]
        pub unsafe fn panel(a: MatRef<'_>, b: MatRef<'_>, rows: Range<usize>, cols: Range<usize>, out: Out) {
            // SAFETY: the caller's contract.
            unsafe { $crate::gemm::tiled::panel::<$kernel>(a, b, rows, cols, out) }
        }

        /// [`tiled::segmented`](super::tiled::segmented) with this kernel.
        ///
        /// # Safety
        /// The CPU has the kernel's instructions; the rest is `tiled::segmented`'s contract.
        #[target_feature(enable = $features)]
        pub unsafe fn segmented(a: &Segments<'_>, packed: *const f32, n: usize, out: Out) {
            // SAFETY: the caller's contract.
            unsafe { $crate::gemm::tiled::segmented::<$kernel>(a, packed, n, out) }
        }
    };
}
pub(super) use micro_kernel;

/// Where the tile at column `j` of a packed block starts: its panel, then its place in the panel.
fn panel_start(j: usize, depth: usize) -> usize {
    j / PANEL * PANEL * depth + j % PANEL
}

/// `C[rows, cols] = A[rows, :] · B[:, cols] + beta C[rows, cols]` with kernel `K`, into
/// `out` (`beta` is `out.beta`).
///
/// # Safety
/// `K`'s instructions are available; `out.c` points to a row-major buffer with row stride
/// `out.ldc` covering the panel, which no other thread touches; the views are in bounds.
#[inline(always)]
pub(super) unsafe fn panel<K: MicroKernel>(
    a: MatRef<'_>,
    b: MatRef<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    out: Out,
) {
    let Out { c, ldc, beta } = out;
    let k = a.cols;
    let blocks = k.div_ceil(K::KC);
    let kc = k.div_ceil(blocks); // balanced blocks: 576 -> 2 x 288, not 512 + 64
    let ap = a.data.as_ptr();
    // The loops run outside the thread-local's closure: a closure would not inherit the entry
    // point's target features, and the kernels inlined into it would lose their instructions.
    let packed = PACKED_B.with_borrow_mut(|packed| {
        if packed.len() < K::KC * K::NC {
            packed.resize(K::KC * K::NC, 0.0);
        }
        packed.as_mut_ptr()
    });
    // SAFETY: the buffer lives as long as the thread and nothing else borrows it while this
    // runs (the loops below call no code that uses `PACKED_B`).
    let packed = unsafe { std::slice::from_raw_parts_mut(packed, K::KC * K::NC) };
    // Row tiles of an aliasing `A` are copied, a few hundred floats per row, to rows a skewed
    // stride apart; each copy then serves the block's `NC / NR` column tiles.
    let copy_a = a.cs == 1 && cols.len() > K::NR && aliases_in_l1(K::MR.min(rows.len()), a.rs);
    let a_stride = skewed_stride(kc);
    let a_tile = if copy_a {
        let tile = A_TILE.with_borrow_mut(|tile| {
            if tile.len() < K::MR * a_stride {
                tile.resize(K::MR * a_stride, 0.0);
            }
            tile.as_mut_ptr()
        });
        // SAFETY: as `packed`, for `A_TILE`.
        unsafe { std::slice::from_raw_parts_mut(tile, K::MR * a_stride) }
    } else {
        &mut []
    };
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
                let (a_origin, a_rs) = if copy_a {
                    for r in 0..mr {
                        let src = &a.data[(i + r) * a.rs + p0..][..depth];
                        a_tile[r * a_stride..][..depth].copy_from_slice(src);
                    }
                    (a_tile.as_ptr(), a_stride)
                } else {
                    // SAFETY: the row tile's origin lies in the view, per the contract.
                    (unsafe { ap.add(i * a.rs + p0 * a.cs) }, a.rs)
                };
                let mut j = j0;
                while j < j0 + nc {
                    // SAFETY: every index stays in the panel and the views, per the contract.
                    unsafe {
                        let t = Tile {
                            a: a_origin,
                            a_rs,
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
}

/// `C[i, :] (+)= sum_s sum_t A[i rs + offsets[s] + t cs] Bp[s seg_len + t, :]` for the rows of
/// `a`: a GEMM whose inner dimension is a list of equal segments, each at its own offset in `A`.
/// With `A` a zero-padded image and one segment per kernel row, this is a convolution with no
/// im2col matrix (implicit GEMM). `Bp` (`n` columns) is packed by [`super::pack_panels`] or
/// [`super::pack_block`]; `C` is overwritten (`out.beta` 0) or added to (1).
///
/// # Safety
/// `K`'s instructions are available, and every address formed lies in the buffers (checked by
/// the safe wrapper [`super::segmented`]).
#[inline(always)]
pub(super) unsafe fn segmented<K: MicroKernel>(a: &Segments<'_>, packed: *const f32, n: usize, out: Out) {
    let (rows, (rs, cs)) = (a.rows, a.strides);
    let (depth, accumulate) = (a.offsets.len() * a.seg_len, out.beta != 0.0);
    let mut i = 0;
    while i < rows {
        let mr = K::MR.min(rows - i);
        let mut j = 0;
        while j < n {
            // SAFETY: per the contract.
            unsafe {
                let t = Tile {
                    a: a.a.as_ptr().add(i * rs),
                    a_rs: rs,
                    a_cs: cs,
                    b: packed.add(panel_start(j, depth)),
                    depth,
                    c: out.c.add(i * out.ldc + j),
                    ldc: out.ldc,
                    width: K::NR.min(n - j),
                };
                K::tile_segments(&t, mr, a, accumulate);
            }
            j += K::NR;
        }
        i += K::MR;
    }
}
