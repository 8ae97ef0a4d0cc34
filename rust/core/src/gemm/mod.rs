//! Matrix products for the layers, chosen at run time:
//!
//! - on x86-64 with AVX-512 (every product), or else AVX2 + FMA (a tall `A`: im2col matrices):
//!   the in-place kernels (`tiled.rs`, with the micro-kernels of `avx512.rs` and `avx2.rs`),
//!   which read `A` where it lies (no packing pass; the tall im2col matrices of convolutions made
//!   packing cost as much as the arithmetic). Both kernels add the products of each output in the
//!   same order, so they give the same bits;
//! - otherwise `matrixmultiply` (its own runtime AVX-512/AVX2/NEON dispatch, arbitrary strides).
//!
//! Both run single-threaded on one panel; [`gemm`] splits the output into row or column panels,
//! one per worker thread of the current pool. Measured on the shapes of the MLP benchmark, this
//! beat the `gemm` crate's own threading (see `benches/README.md`).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod bf16;
mod pairs;
#[cfg(target_arch = "x86_64")]
mod tiled;

pub use pairs::{
    as_words, as_words_mut, bf16_bits, interleave_pairs, pack_pair_panels, pack_pair_rows, pair, pair_panels_len,
    pairs, round_bf16, to_pairs,
};

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

/// A read-only matrix view: element `(i, j)` lives at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert!(data.len() >= rows * cols);
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of this view (no data moves).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn span_ok(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// Below this many multiply-adds a product runs on one thread: splitting costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 17;
/// Panel sizes are multiples of the micro-kernel's tile, so every thread feeds whole tiles, and of
/// nothing larger, so the threads' shares stay even.
fn panel_align(kernel: Kernel, in_place: bool, split_rows: bool) -> usize {
    match (in_place, split_rows) {
        (true, true) => kernel.tile().0,
        (true, false) => kernel.tile().1,
        (false, _) => 16, // matrixmultiply's AVX-512 tile is 16 wide
    }
}

/// One thread's panel of `len` rows (or columns): an even share, rounded up to whole tiles of
/// `align`.
fn aligned_share(len: usize, threads: usize, align: usize) -> usize {
    len.div_ceil(threads).div_ceil(align) * align
}

/// Whether to split `C` into row panels (else column panels), given its rows and columns with
/// the tile size each is aligned to. The longer side, so each panel keeps enough work for the
/// micro-kernel, unless whole tiles share it out unevenly and the other side evenly: 128 rows in
/// 12-row tiles make panels of 72 and 56 rows on 2 threads (the first does 56% of the work),
/// while 128 columns in 32-column tiles make two of 64: `128x256x128` (`mlp_mnist`'s second
/// layer) ran at 211 instead of 188 GFLOP/s on 2 threads (criterion, twice each, Zen 4).
fn split_rows((m, row_tile): (usize, usize), (n, col_tile): (usize, usize), threads: usize) -> bool {
    // The largest panel's share of the product, in parts per thousand.
    let largest = |len: usize, tile: usize| aligned_share(len, threads, tile).min(len) * 1000 / len;
    let (by_rows, by_cols) = (largest(m, row_tile), largest(n, col_tile));
    const CLEARLY_EVENER: usize = 40;
    if m >= n {
        by_rows <= by_cols + CLEARLY_EVENER
    } else {
        by_cols > by_rows + CLEARLY_EVENER
    }
}

/// Whether `A · B` goes to an in-place kernel: every product with AVX-512, a tall `A` (an im2col
/// matrix) with AVX2.
///
/// With AVX-512 the wide products of `mlp_wide` (`n = 1024`) used to go to `matrixmultiply`: the
/// in-place kernel ran them up to 23% slower, from two causes now removed. A row-major `A` with
/// 1024 columns put a tile's 12 rows in one L1 set (see `tiled::aliases_in_l1`), and the
/// transposed `B` of an input gradient was packed by a gather. Since then it is as fast or
/// faster on every wide shape: 1.00-1.05x at 1 thread and 1.04-1.12x at 2 on the GEMM bench's
/// five wide shapes (median of 36 alternating calls, 2026-12-06, Zen 4).
///
/// The AVX2 kernel on a Dense layer's products trained `mlp_mnist` 22%
/// slower at 2 threads than `matrixmultiply`'s AVX2 kernel (3 alternating pairs, 2026-12-06,
/// `matrixmultiply` built without its AVX-512 kernel to stand for an AVX2 machine), and as fast
/// at 1 thread. Measured again after the aliasing and transposed-`B` fixes, the same way (3
/// alternating pairs each, 1 / 2 threads): `mlp_mnist` 0.96x / 0.84x, `mlp_wide` 0.91x / 0.83x,
/// `mlp_bn_dropout` 1.03x / 1.06x; so Dense products stay on `matrixmultiply` with AVX2.
fn in_place(kernel: Kernel, a: &MatRef<'_>, b: &MatRef<'_>) -> bool {
    (kernel == Kernel::Avx512 || a.rows >= TALL_A * b.cols) && kernel.in_place_runs()
}

/// Raw pointer that may cross to a worker thread: each worker touches a disjoint panel of C.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `C = A · B + beta · C`, with `C` row-major `a.rows x b.cols`.
///
/// Panics if the inner dimensions disagree or a view is too short (an engine bug, never user input).
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    gemm_with(Kernel::get(), a, b, beta, c)
}

/// [`gemm`] with a given kernel family (an in-place one only where the CPU runs it, and only for
/// a narrow `B`; otherwise it falls back to `matrixmultiply`).
pub fn gemm_with(kernel: Kernel, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm: inner dimensions differ");
    assert!(a.span_ok() && b.span_ok(), "gemm: view exceeds its buffer");
    assert!(c.len() >= m * n, "gemm: output buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        return;
    }
    let threads = rayon::current_num_threads();
    let c_ptr = SendPtr(c.as_mut_ptr());
    if threads <= 1 || m * k * n < PARALLEL_MIN_FLOPS {
        // SAFETY: bounds checked above; C is exclusively borrowed.
        unsafe { panel(kernel, a, b, 0..m, 0..n, Out { c: c_ptr.0, ldc: n, beta }) };
        return;
    }
    let in_place = in_place(kernel, &a, &b);
    let tile = |rows: bool| panel_align(kernel, in_place, rows);
    let split_rows = split_rows((m, tile(true)), (n, tile(false)), threads);
    let (len, align) = if split_rows { (m, tile(true)) } else { (n, tile(false)) };
    let panel_len = aligned_share(len, threads, align);
    let panels = len.div_ceil(panel_len);
    (0..panels).into_par_iter().for_each(|p| {
        let lo = p * panel_len;
        let hi = (lo + panel_len).min(len);
        let ptr = c_ptr;
        // SAFETY: panels are disjoint row (or column) ranges of C, in bounds by construction.
        unsafe {
            if split_rows {
                panel(kernel, a, b, lo..hi, 0..n, Out { c: ptr.0, ldc: n, beta })
            } else {
                panel(kernel, a, b, 0..m, lo..hi, Out { c: ptr.0, ldc: n, beta })
            }
        }
    });
}

/// Whether [`gemm_bf16`] runs on bf16 instructions here (AVX512_BF16), rather than on f32
/// products of rounded copies.
/// Decided once: `FERRONET_GEMM` (any value) forcing a narrower family turns it off too.
pub fn bf16_native() -> bool {
    static NATIVE: OnceLock<bool> = OnceLock::new();
    *NATIVE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return bf16::available() && std::env::var_os("FERRONET_GEMM").is_none_or(|v| v.is_empty());
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

thread_local! {
    /// `A` and `B` of a bf16 product, converted by the calling thread and read by every worker;
    /// grown once to the largest product, then reused.
    static BF16_OPERANDS: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    /// The rounded copies of [`gemm_bf16`] without the instructions.
    static ROUNDED_OPERANDS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `C = bf16(A) · bf16(B) + beta · C`, with f32 sums (the matrix products of the
/// `mixed_bfloat16` policy), `C` row-major `a.rows x b.cols`. With AVX512_BF16 ([`bf16_native`])
/// on `vdpbf16ps`, twice the multiply-adds per instruction of an f32 FMA; elsewhere, [`gemm`] on
/// rounded copies of the operands: the same operand values, sums in another order. Either way
/// the result does not depend on the thread count. Where the memory for the converted copies
/// cannot be had, the product runs in f32 instead of aborting.
///
/// Panics if the inner dimensions disagree or a view is too short (an engine bug, never user input).
pub fn gemm_bf16(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm_bf16: inner dimensions differ");
    assert!(a.span_ok() && b.span_ok(), "gemm_bf16: view exceeds its buffer");
    assert!(c.len() >= m * n, "gemm_bf16: output buffer too small");
    if m == 0 || n == 0 || k == 0 || !bf16_native() {
        return gemm_rounded(a, b, beta, c);
    }
    #[cfg(target_arch = "x86_64")]
    with_scratch(&BF16_OPERANDS, |(a_words, b_words)| {
        if !grow(a_words, bf16::converted_len(m, k)) || !grow(b_words, bf16::packed_len(k, n)) {
            return gemm(a, b, beta, c); // no memory for the copies: f32 products, no abort
        }
        let pairs = bf16::convert_a(a, a_words);
        bf16::pack_b(b, b_words);
        let packed: &[u32] = b_words;
        let c_ptr = SendPtr(c.as_mut_ptr());
        let threads = rayon::current_num_threads();
        let run = |rows: Range<usize>, cols: Range<usize>| {
            let whole = c_ptr; // the Send wrapper, not its field
            let out = Out { c: whole.0, ldc: n, beta };
            // SAFETY: the instructions were detected; the operands were converted for the whole
            // product and the caller's panels of C are disjoint.
            unsafe { bf16::panel(pairs, packed, k, rows, cols, out) }
        };
        if threads <= 1 || m * k * n < 2 * PARALLEL_MIN_FLOPS {
            return run(0..m, 0..n);
        }
        // The longer side: the bf16 kernel gained nothing from the f32 kernel's evener split
        // (`128x256x128` at 2 threads: 154-164 against 166-168 GFLOP/s split by rows).
        let split_rows = m >= n;
        let (len, align) = if split_rows { (m, bf16::MR) } else { (n, bf16::PANEL) };
        let panel_len = aligned_share(len, threads, align);
        (0..len.div_ceil(panel_len)).into_par_iter().for_each(|p| {
            let span = p * panel_len..((p + 1) * panel_len).min(len);
            if split_rows {
                run(span, 0..n)
            } else {
                run(0..m, span)
            }
        });
    });
}

/// Runs `f` on this thread's scratch buffers, taken out of their slot meanwhile: while `f` waits
/// on its parallel region, this thread may run another product's task, which then finds the slot
/// empty and grows buffers of its own, rather than finding it borrowed. The larger pair is kept.
fn with_scratch<T>(
    slot: &'static std::thread::LocalKey<std::cell::RefCell<(Vec<T>, Vec<T>)>>,
    f: impl FnOnce(&mut (Vec<T>, Vec<T>)),
) {
    let mut scratch = slot.with_borrow_mut(std::mem::take);
    f(&mut scratch);
    slot.with_borrow_mut(|kept| {
        if kept.0.capacity() + kept.1.capacity() < scratch.0.capacity() + scratch.1.capacity() {
            *kept = scratch;
        }
    });
}

/// Grows a scratch buffer to `len` (never shrinks it); false when the memory cannot be had.
fn grow<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> bool {
    if v.len() < len {
        if v.try_reserve_exact(len - v.len()).is_err() {
            return false;
        }
        v.resize(len, T::default());
    }
    true
}

/// [`gemm_bf16`] without the instructions: [`gemm`] on row-major rounded copies.
fn gemm_rounded(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    with_scratch(&ROUNDED_OPERANDS, |(ra, rb)| {
        if !grow(ra, m * k) || !grow(rb, k * n) {
            return gemm(a, b, beta, c); // no memory for the copies: f32 products, no abort
        }
        for i in 0..m {
            for p in 0..k {
                ra[i * k + p] = round_bf16(a.data[i * a.rs + p * a.cs]);
            }
        }
        for p in 0..k {
            for j in 0..n {
                rb[p * n + j] = round_bf16(b.data[p * b.rs + j * b.cs]);
            }
        }
        gemm(MatRef::row_major(&ra[..m * k], m, k), MatRef::row_major(&rb[..k * n], k, n), beta, c);
    });
}

/// A wider `B` still goes to the in-place kernel when `A` is this many times taller than `B` is
/// wide (a convolution's input gradient, `dZ · Wᵀ`): packing `A` would then dominate.
const TALL_A: usize = 16;

/// Columns per packed panel of [`pack_panels`] and [`pack_block`].
pub const PANEL: usize = 32;

/// Length of `k x n` packed by [`pack_panels`] or [`pack_block`].
pub fn packed_len(k: usize, n: usize) -> usize {
    k * n.div_ceil(PANEL) * PANEL
}

/// Packs a `k x n` matrix into [`PANEL`]-wide column panels, zero-padded at the right edge: the
/// layout the AVX-512 kernels read. `fill(p, j0, dst)` writes `B[p, j0..j0 + dst.len()]`.
fn pack_rows(k: usize, n: usize, fill: impl Fn(usize, usize, &mut [f32]), out: &mut [f32]) {
    for (t, panel) in out[..packed_len(k, n)].chunks_exact_mut(k * PANEL).enumerate() {
        let (j0, width) = (t * PANEL, PANEL.min(n - t * PANEL));
        for (p, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            fill(p, j0, &mut row[..width]);
            row[width..].fill(0.0);
        }
    }
}

/// Packs the `k x n` matrix `b(p, j)` (e.g. a flipped, transposed kernel) for [`segmented`].
pub fn pack_panels(k: usize, n: usize, b: impl Fn(usize, usize) -> f32, out: &mut [f32]) {
    pack_rows(k, n, |p, j0, dst| dst.iter_mut().enumerate().for_each(|(q, v)| *v = b(p, j0 + q)), out);
}

/// Packs the block `B[p0..p0 + k, j0..j0 + n]` of a view: rows copied as slices when `B` is
/// row-major; when it is column-major (`Wᵀ` for an input gradient), columns are read as slices
/// and transposed into the panel in 8 x 8 blocks, since gathering a packed row would touch one
/// cache line (and, for a wide `B`, one page) per element; any other layout is gathered element
/// by element.
pub fn pack_block(b: MatRef<'_>, (p0, k): (usize, usize), (j0, n): (usize, usize), out: &mut [f32]) {
    if b.rs == 1 && b.cs != 1 {
        for (t, panel) in out[..packed_len(k, n)].chunks_exact_mut(k * PANEL).enumerate() {
            let (jt, width) = (j0 + t * PANEL, PANEL.min(n - t * PANEL));
            #[cfg(target_arch = "x86_64")]
            avx2::pack_columns(b.data, (jt * b.cs + p0, b.cs), k, width, panel);
            #[cfg(not(target_arch = "x86_64"))]
            for q in 0..width {
                let column = &b.data[(jt + q) * b.cs + p0..][..k];
                panel.chunks_exact_mut(PANEL).zip(column).for_each(|(row, &v)| row[q] = v);
            }
            if width < PANEL {
                panel.chunks_exact_mut(PANEL).for_each(|row| row[width..].fill(0.0));
            }
        }
        return;
    }
    pack_rows(
        k,
        n,
        |p, j, dst| {
            let start = (p0 + p) * b.rs + (j0 + j) * b.cs;
            if b.cs == 1 {
                dst.copy_from_slice(&b.data[start..][..dst.len()]);
            } else {
                dst.iter_mut().enumerate().for_each(|(q, v)| *v = b.data[start + q * b.cs]);
            }
        },
        out,
    );
}

/// Whether [`segmented`] runs on this machine (it needs AVX-512 or AVX2 + FMA).
pub fn segmented_available() -> bool {
    Kernel::get().in_place_runs()
}

/// The left operand of an implicit GEMM ([`segmented`]): `rows` rows whose inner values are the
/// segments `a[i rs + offsets[s] + t cs]`, `t < seg_len`, for each offset `s` in turn
/// (`strides = (rs, cs)`).
#[derive(Clone, Copy, Debug)]
pub struct Segments<'a, T = f32> {
    pub a: &'a [T],
    pub strides: (usize, usize),
    pub offsets: &'a [usize],
    pub seg_len: usize,
    pub rows: usize,
}

/// Where a kernel writes its product: `C = product + beta C`, row-major from `c` with row stride
/// `ldc`.
#[derive(Clone, Copy)]
struct Out {
    c: *mut f32,
    ldc: usize,
    beta: f32,
}

/// Implicit GEMM: `C[i, :] (+)= sum_s sum_t A[i rs + offsets[s] + t cs] B[s seg_len + t, :]` for
/// the rows of `a`, with `B` (`offsets.len() seg_len x n`) packed by [`pack_panels`] or
/// [`pack_block`]. `C` (row stride `ldc`) is overwritten, or added to with `accumulate`.
/// Single-threaded: callers split the work.
///
/// Panics if [`segmented_available`] is false or a buffer is too short (engine bugs).
pub fn segmented(a: &Segments<'_>, packed: &[f32], n: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
    segmented_with(Kernel::get(), a, packed, (n, ldc), c, accumulate)
}

/// [`segmented`] with a given in-place kernel family (tests compare them).
fn segmented_with(
    kernel: Kernel,
    a: &Segments<'_>,
    packed: &[f32],
    (n, ldc): (usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(kernel.in_place_runs(), "segmented GEMM needs AVX-512 or AVX2 + FMA");
    if !segments_in_bounds(a, packed.len() >= packed_len(a.offsets.len() * a.seg_len, n), (n, ldc), c) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let out = Out { c: c.as_mut_ptr(), ldc, beta: if accumulate { 1.0 } else { 0.0 } };
        // SAFETY: the kernel's instructions are available and every address was bounds-checked
        // above.
        unsafe {
            if kernel == Kernel::Avx512 {
                avx512::segmented(a, packed.as_ptr(), n, out)
            } else {
                avx2::segmented(a, packed.as_ptr(), n, out)
            }
        }
    }
}

/// Checks every address an implicit GEMM will form (`packed_ok`: `B` is long enough); false when
/// there is nothing to compute.
///
/// Panics if a buffer is too short (an engine bug).
fn segments_in_bounds<T>(a: &Segments<'_, T>, packed_ok: bool, (n, ldc): (usize, usize), c: &[f32]) -> bool {
    let (rows, (rs, cs), seg_len) = (a.rows, a.strides, a.seg_len);
    if rows == 0 || n == 0 || seg_len == 0 {
        return false;
    }
    let reach = (rows - 1) * rs + a.offsets.iter().max().map_or(0, |&o| o + (seg_len - 1) * cs + 1);
    assert!(reach <= a.a.len(), "segmented: A too short");
    assert!(packed_ok, "segmented: packed B too short");
    assert!(c.len() >= (rows - 1) * ldc + n && ldc >= n, "segmented: C too short");
    true
}

/// [`segmented`] on bf16 pairs, for the `mixed_bfloat16` policy: each word of `a` is a pair of
/// the inner dimension (see [`pairs`]; strides, offsets and `seg_len` count words), `packed`
/// holds the pair-rows of `B` from [`pack_pair_panels`], and the sums are f32 as in
/// [`gemm_bf16`]. Single-threaded: callers split the work.
///
/// Panics if [`bf16_native`] is false or a buffer is too short (engine bugs).
pub fn segmented_bf16(a: &Segments<'_, u32>, packed: &[u32], n: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(bf16_native(), "a bf16 implicit GEMM without the bf16 instructions");
    if !segments_in_bounds(a, packed.len() >= pair_panels_len(a.offsets.len() * a.seg_len, n), (n, ldc), c) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let out = Out { c: c.as_mut_ptr(), ldc, beta: if accumulate { 1.0 } else { 0.0 } };
        // SAFETY: the instructions were detected and every address was bounds-checked above.
        unsafe { bf16::segmented(a, packed.as_ptr(), n, out) }
    }
}

/// The micro-kernel family picked for this machine, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// In-place kernels on AVX-512 (`12 x 32` tiles).
    Avx512,
    /// In-place kernels on AVX2 + FMA (`6 x 16` tiles).
    Avx2,
    /// `matrixmultiply` for every product, and im2col for every convolution.
    MatrixMultiply,
}

static KERNEL: OnceLock<Kernel> = OnceLock::new();

impl Kernel {
    /// The widest family this CPU runs. `FERRONET_GEMM=avx2` forces the AVX2 kernels where the
    /// CPU has them, `FERRONET_GEMM=matrixmultiply` the portable path (for tests and
    /// comparisons).
    pub fn get() -> Kernel {
        *KERNEL.get_or_init(|| {
            let forced = std::env::var("FERRONET_GEMM").unwrap_or_default();
            let picked = match forced.as_str() {
                "matrixmultiply" => Kernel::MatrixMultiply,
                "avx2" => Kernel::Avx2,
                _ => Kernel::Avx512,
            };
            [picked, Kernel::Avx2, Kernel::MatrixMultiply]
                .into_iter()
                .find(|k| *k == Kernel::MatrixMultiply || k.in_place_runs())
                .unwrap_or(Kernel::MatrixMultiply)
        })
    }

    /// Its name, as `FERRONET_GEMM` takes it and `cpu_info()` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::MatrixMultiply => "matrixmultiply",
        }
    }

    /// Whether this is an in-place family the CPU can run.
    fn in_place_runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Kernel::Avx512 => avx512::available(),
            Kernel::Avx2 => avx2::available(),
            Kernel::MatrixMultiply => false,
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Rows and columns of its micro-tile.
    fn tile(self) -> (usize, usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use tiled::MicroKernel;
            match self {
                Kernel::Avx512 => (avx512::Avx512::MR, avx512::Avx512::NR),
                Kernel::Avx2 => (avx2::Avx2::MR, avx2::Avx2::NR),
                Kernel::MatrixMultiply => (16, 16),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        (16, 16)
    }
}

/// One panel `C[rows, cols]` on the calling thread.
///
/// # Safety
/// `c` must point to a row-major buffer of at least `a.rows * ldc` elements, and no other thread
/// may touch the panel while this runs.
#[allow(clippy::too_many_arguments)]
unsafe fn panel(kernel: Kernel, a: MatRef<'_>, b: MatRef<'_>, rows: Range<usize>, cols: Range<usize>, out: Out) {
    #[cfg(target_arch = "x86_64")]
    if in_place(kernel, &a, &b) {
        // SAFETY: the kernel's instructions were detected; the rest is this function's own
        // contract.
        unsafe {
            if kernel == Kernel::Avx512 {
                avx512::panel(a, b, rows, cols, out)
            } else {
                avx2::panel(a, b, rows, cols, out)
            }
        };
        return;
    }
    let Out { c, ldc, beta } = out;
    let (m, n, k) = (rows.len(), cols.len(), a.cols);
    // SAFETY: the caller guarantees the buffers; offsets stay inside the views checked by `gemm`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr().add(rows.start * a.rs),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr().add(cols.start * b.cs),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.add(rows.start * ldc + cols.start),
            ldc as isize,
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0.0f64;
                for p in 0..a.cols {
                    s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                c[i * b.cols + j] = s as f32;
            }
        }
        c
    }

    /// Every kernel family this CPU runs (matrixmultiply always).
    fn runnable() -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2, Kernel::MatrixMultiply]
            .into_iter()
            .filter(|k| *k == Kernel::MatrixMultiply || k.in_place_runs())
            .collect()
    }

    fn filled(len: usize, salt: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 31 + salt * 17) % 23) as f32 - 11.0) / 7.0).collect()
    }

    #[test]
    fn all_transpose_combinations_match_naive_product_serial_and_parallel() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for &(m, k, n) in &[(1, 1, 1), (7, 5, 3), (70, 130, 90), (200, 64, 33), (33, 64, 200)] {
                    let ad = filled(m * k, 1);
                    let bd = filled(k * n, 2);
                    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                        let a = if ta { MatRef::row_major(&ad, k, m).t() } else { MatRef::row_major(&ad, m, k) };
                        let b = if tb { MatRef::row_major(&bd, n, k).t() } else { MatRef::row_major(&bd, k, n) };
                        let want = naive(a, b);
                        let mut c = vec![1.0; m * n];
                        gemm(a, b, 0.0, &mut c);
                        for (x, y) in c.iter().zip(&want) {
                            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{k}x{n} ta={ta} tb={tb}");
                        }
                    }
                }
            });
        }
    }

    #[test]
    fn every_kernel_family_agrees_with_the_naive_product_across_blocks_and_edges() {
        // k > KC (several inner blocks), n > NC (several column blocks) with a partial 32-wide
        // tile, m not a multiple of the 12-row tile; beta 0 (C never read), 1 and 0.5.
        // 700 x 30 x 40: tall enough for the AVX2 kernel, in 6-row tiles and a partial one.
        for &(m, k, n) in &[(37, 1000, 300), (13, 769, 33), (96, 5, 384), (20, 50, 400), (1, 3, 1), (700, 30, 40)] {
            let ad = filled(m * k, 3);
            let bd = filled(k * n, 4);
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let a = if ta { MatRef::row_major(&ad, k, m).t() } else { MatRef::row_major(&ad, m, k) };
                let b = if tb { MatRef::row_major(&bd, n, k).t() } else { MatRef::row_major(&bd, k, n) };
                let product = naive(a, b);
                for beta in [0.0f32, 1.0, 0.5] {
                    let mut in_place_bits: Option<Vec<u32>> = None;
                    for kernel in runnable() {
                        let start = filled(m * n, 5);
                        let mut c = if beta == 0.0 { vec![f32::NAN; m * n] } else { start.clone() };
                        gemm_with(kernel, a, b, beta, &mut c);
                        for ((x, p), s) in c.iter().zip(&product).zip(&start) {
                            let want = p + if beta == 0.0 { 0.0 } else { beta * s };
                            assert!((x - want).abs() <= 1e-3 * (1.0 + want.abs()), "{kernel:?} {m}x{k}x{n} {ta} {tb}");
                        }
                        // The in-place families add in the same order: the same bits.
                        if kernel != Kernel::MatrixMultiply && in_place(kernel, &a, &b) {
                            let bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
                            assert!(in_place_bits.get_or_insert_with(|| bits.clone()) == &bits, "{m}x{k}x{n}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn aliasing_rows_and_transposed_b_give_the_bits_of_the_plain_layouts() {
        // `A` with 1024 (or 512) columns has rows that share L1 sets, so the in-place kernel
        // copies its row tiles to a skewed stride; the same values at a stride of k + 8 are read
        // where they lie. A transposed `B` is packed column by column, a row-major one row by
        // row. Every variant must give the bits of the plain one. 700 x k x 40 is tall enough for
        // the AVX2 kernel; 37 x k x 300 spans column blocks with a partial tile.
        #[cfg(target_arch = "x86_64")]
        assert!(tiled::aliases_in_l1(12, 1024) && tiled::aliases_in_l1(12, 512) && tiled::aliases_in_l1(6, 1024));
        #[cfg(target_arch = "x86_64")]
        assert!(!tiled::aliases_in_l1(12, 1032) && !tiled::aliases_in_l1(6, 512) && !tiled::aliases_in_l1(12, 784));
        for &(m, k, n) in &[(37, 1024, 300), (700, 1024, 40), (50, 512, 70)] {
            let ad = filled(m * k, 6);
            let bd = filled(k * n, 7);
            let ld = k + 8;
            let mut skewed = vec![0.0; m * ld];
            skewed.chunks_exact_mut(ld).zip(ad.chunks_exact(k)).for_each(|(d, s)| d[..k].copy_from_slice(s));
            let mut bt = vec![0.0; n * k];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = bd[p * n + j];
                }
            }
            let a = MatRef::row_major(&ad, m, k);
            let a_skewed = MatRef { data: &skewed, rows: m, cols: k, rs: ld, cs: 1 };
            let b = MatRef::row_major(&bd, k, n);
            let b_t = MatRef::row_major(&bt, n, k).t();
            for kernel in runnable().into_iter().filter(|&kn| kn != Kernel::MatrixMultiply && in_place(kn, &a, &b)) {
                let run = |a: MatRef<'_>, b: MatRef<'_>| {
                    let mut c = vec![f32::NAN; m * n];
                    gemm_with(kernel, a, b, 0.0, &mut c);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                };
                let plain = run(a_skewed, b);
                let want = naive(a, b);
                plain
                    .iter()
                    .zip(&want)
                    .for_each(|(&x, y)| assert!((f32::from_bits(x) - y).abs() <= 1e-3 * (1.0 + y.abs())));
                assert!(run(a, b) == plain, "{kernel:?} {m}x{k}x{n}: aliasing A");
                assert!(run(a_skewed, b_t) == plain, "{kernel:?} {m}x{k}x{n}: transposed B");
                assert!(run(a, b_t) == plain, "{kernel:?} {m}x{k}x{n}: both");
            }
        }
    }

    /// An `r x c` view of `d`, stored transposed when `t`.
    fn view(d: &[f32], r: usize, c: usize, t: bool) -> MatRef<'_> {
        if t {
            MatRef::row_major(d, c, r).t()
        } else {
            MatRef::row_major(d, r, c)
        }
    }

    #[test]
    fn bf16_product_is_the_f32_sum_of_the_rounded_operands_products_at_every_thread_count() {
        // k = 1601: odd (a zero half pair) and three inner blocks; n = 70: a partial panel; m = 29:
        // a partial 12-row tile. Products of bf16 values are exact in f32, so the reference is
        // the f64 sum of the rounded operands' products, within f32 summation error.
        let round = |v: &[f32]| v.iter().map(|&x| round_bf16(x)).collect::<Vec<f32>>();
        for &(m, k, n) in &[(29, 1601, 70), (1, 3, 1), (64, 40, 300), (300, 17, 33)] {
            let (ad, bd) = (filled(m * k, 8), filled(k * n, 9));
            let (ra, rb) = (round(&ad), round(&bd));
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let (a, b) = (view(&ad, m, k, ta), view(&bd, k, n, tb));
                let (a_r, b_r) = (view(&ra, m, k, ta), view(&rb, k, n, tb));
                let want = naive(a_r, b_r);
                let abs = naive(
                    MatRef { data: &ra.iter().map(|v| v.abs()).collect::<Vec<_>>(), ..a_r },
                    MatRef { data: &rb.iter().map(|v| v.abs()).collect::<Vec<_>>(), ..b_r },
                );
                let mut first: Option<Vec<u32>> = None;
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let start = filled(m * n, 10);
                    let mut c = start.clone();
                    pool.install(|| gemm_bf16(a, b, 0.5, &mut c));
                    for (((x, w), s), t) in c.iter().zip(&want).zip(&start).zip(&abs) {
                        let w = w + 0.5 * s;
                        assert!((x - w).abs() <= 1e-5 * (t + s.abs()) + 1e-6, "{m}x{k}x{n} {ta} {tb}: {x} vs {w}");
                    }
                    let bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
                    assert!(first.get_or_insert_with(|| bits.clone()) == &bits, "{m}x{k}x{n}: {threads} threads");
                }
                // Without the instructions: f32 products of rounded copies, to the same tolerance.
                let mut c = filled(m * n, 10);
                gemm_rounded(a, b, 0.0, &mut c);
                for ((x, w), t) in c.iter().zip(&want).zip(&abs) {
                    assert!((x - w).abs() <= 1e-5 * t + 1e-6, "rounded {m}x{k}x{n}");
                }
            }
        }
    }

    #[test]
    fn scratch_buffers_serve_a_product_started_while_another_waits_on_the_same_thread() {
        // What a thread does when it runs another task while waiting on its parallel region.
        with_scratch(&BF16_OPERANDS, |outer| {
            assert!(grow(&mut outer.0, 10));
            with_scratch(&BF16_OPERANDS, |inner| {
                assert!(inner.0.is_empty(), "the waiting product's buffers are not shared");
                assert!(grow(&mut inner.0, 100));
            });
        });
        // The larger pair stays for the next product.
        BF16_OPERANDS.with_borrow(|kept| assert!(kept.0.len() >= 10));
    }

    #[test]
    fn bf16_products_nested_in_parallel_tasks_of_one_pool_agree() {
        // Each task's product waits on its own parallel region, during which its thread may run
        // another task's product: the scratch buffers must not be borrowed across that wait.
        let (m, k, n) = (240, 300, 300);
        let (ad, bd) = (filled(m * k, 11), filled(k * n, 12));
        let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
        let mut want = vec![0.0; m * n];
        gemm_bf16(a, b, 0.0, &mut want);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let results: Vec<Vec<f32>> = pool.install(|| {
            (0..96)
                .into_par_iter()
                .map(|_| {
                    let mut c = vec![0.0; m * n];
                    gemm_bf16(a, b, 0.0, &mut c);
                    c
                })
                .collect()
        });
        assert!(results.iter().all(|c| c == &want));
    }

    #[test]
    fn segmented_product_matches_the_naive_sum_over_segments() {
        // 3 segments of 5 at scattered offsets, rows in two tiles and a remainder; 40 columns
        // (one full panel and a partial one), 45 and 5 (partial tiles of both kernels' widths).
        let (rows, rs, seg_len) = (29, 7, 5);
        let offsets = [0usize, 11, 4];
        let a = filled(rows * rs + 30, 6);
        let k = offsets.len() * seg_len;
        for n in [40, 45, 5] {
            let b = filled(k * n, 7);
            let mut packed = vec![f32::NAN; packed_len(k, n)];
            pack_panels(k, n, |p, j| b[p * n + j], &mut packed);
            let ldc = n + 3;
            // Unit column stride (a convolution's forward and input gradient) and stride 2 (its
            // weight gradient), overwriting and accumulating.
            for (cs, accumulate) in [(1, false), (2, false), (2, true)] {
                let start = filled(rows * ldc, 8);
                let mut first_bits: Option<Vec<u32>> = None;
                for kernel in runnable().into_iter().filter(|k| k.in_place_runs()) {
                    let mut c = if accumulate { start.clone() } else { vec![f32::NAN; rows * ldc] };
                    let segs = Segments { a: &a, strides: (rs, cs), offsets: &offsets, seg_len, rows };
                    segmented_with(kernel, &segs, &packed, (n, ldc), &mut c, accumulate);
                    for i in 0..rows {
                        for j in 0..n {
                            let mut want = if accumulate { start[i * ldc + j] as f64 } else { 0.0 };
                            for (s, off) in offsets.iter().enumerate() {
                                for t in 0..seg_len {
                                    want += a[i * rs + off + t * cs] as f64 * b[(s * seg_len + t) * n + j] as f64;
                                }
                            }
                            let got = c[i * ldc + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{kernel:?} ({i}, {j}) n {n} cs {cs}"
                            );
                        }
                        // The columns past `n` are left as they were.
                        for j in n..ldc {
                            let before = if accumulate { start[i * ldc + j] } else { f32::NAN };
                            assert_eq!(c[i * ldc + j].to_bits(), before.to_bits(), "{kernel:?} wrote column {j}");
                        }
                    }
                    let bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
                    assert!(first_bits.get_or_insert_with(|| bits.clone()) == &bits, "{kernel:?} n {n} cs {cs}");
                }
            }
        }
    }

    #[test]
    fn bf16_segmented_product_is_the_f32_sum_over_segments_of_the_rounded_pairs() {
        if !bf16_native() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        // The f32 test's geometry, counted in pairs: 3 segments of 5 pairs, rows in two 12-row
        // tiles and a remainder, a full panel and a partial one, and a narrow partial panel.
        let (rows, rs, seg_len) = (29, 7, 5);
        let offsets = [0usize, 11, 4];
        let values = filled(2 * (rows * rs + 30), 6);
        let a: Vec<u32> = values.chunks_exact(2).map(|v| pair(v[0], v[1])).collect();
        let kq = offsets.len() * seg_len;
        for n in [40, 45, 5] {
            let b = filled(2 * kq * n, 7); // rows 2q and 2q + 1 make pair-row q
            let mut packed = vec![u32::MAX; pair_panels_len(kq, n)];
            pack_pair_panels(kq, n, |q, j| (b[2 * q * n + j], b[(2 * q + 1) * n + j]), &mut packed);
            let ldc = n + 3;
            for (cs, accumulate) in [(1, false), (2, false), (2, true)] {
                let start = filled(rows * ldc, 8);
                let mut c = if accumulate { start.clone() } else { vec![f32::NAN; rows * ldc] };
                let segs = Segments { a: &a[..], strides: (rs, cs), offsets: &offsets, seg_len, rows };
                segmented_bf16(&segs, &packed, n, &mut c, ldc, accumulate);
                for i in 0..rows {
                    for j in 0..n {
                        // Products of bf16 values are exact: the reference is their f64 sum.
                        let (mut want, mut scale) = (if accumulate { start[i * ldc + j] as f64 } else { 0.0 }, 1.0);
                        for (s, off) in offsets.iter().enumerate() {
                            for t in 0..seg_len {
                                for h in 0..2 {
                                    let x = round_bf16(values[2 * (i * rs + off + t * cs) + h]) as f64;
                                    let w = round_bf16(b[(2 * (s * seg_len + t) + h) * n + j]) as f64;
                                    want += x * w;
                                    scale += (x * w).abs();
                                }
                            }
                        }
                        let got = c[i * ldc + j] as f64;
                        assert!((got - want).abs() <= 1e-6 * scale, "({i}, {j}) n {n} cs {cs}: {got} vs {want}");
                    }
                    for j in n..ldc {
                        let before = if accumulate { start[i * ldc + j] } else { f32::NAN };
                        assert_eq!(c[i * ldc + j].to_bits(), before.to_bits(), "wrote column {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn beta_accumulates_into_output() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0];
        let mut c = [10.0, 10.0, 10.0, 10.0];
        gemm(MatRef::row_major(&a, 2, 2), MatRef::row_major(&b, 2, 2), 1.0, &mut c);
        assert_eq!(c, [11.0, 12.0, 13.0, 14.0]);
    }
}
