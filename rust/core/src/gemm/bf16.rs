//! Matrix products on bfloat16 operands with float32 sums, for the `mixed_bfloat16` policy, on
//! CPUs with AVX512_BF16 (Zen 4, Cooper Lake, Sapphire Rapids and later). `vdpbf16ps` takes 16
//! pairs of bf16 values from each operand and adds both products of each pair to one f32 lane:
//! twice the multiply-adds of an f32 FMA per instruction. The product of two bf16 values is exact
//! in f32, so the result differs from an f32 product of the rounded operands only in the order
//! and rounding of the sums (and in flushing subnormals, as the instruction does).
//!
//! Both operands are converted once per product, and the threads share the copies:
//! - `A` to pairs `[a(i, 2q), a(i, 2q + 1)]`, one 32-bit word each, which the kernel broadcasts:
//!   row by row (`[i][q]`) from a row-major `A`, pair-row by pair-row (`[q][i]`) from a
//!   transposed one, so that both conversions read contiguous floats;
//! - `B` to panels of [`PANEL`] columns, each pair-row `q` holding `[b(2q, j), b(2q + 1, j)]` for
//!   the panel's columns `j`: a zmm load is 16 columns' pairs, the lanes the instruction pairs
//!   with the broadcast.
//!
//! An odd inner dimension is padded with a zero pair half. The loops are those of the f32
//! in-place kernel (`tiled.rs`): `12 x 32` tiles of `C`, the inner dimension in blocks of [`KC`]
//! values, the columns in blocks of [`NC`].

use std::arch::x86_64::*;
use std::ops::Range;

use rayon::prelude::*;

use super::avx512::Zmm;
use super::tiled::{store, with_rows, Tile};
use super::{pair, pairs, MatRef, Out, Segments};

/// Columns per packed panel of `B`.
pub const PANEL: usize = 32;
/// Rows of `C` per micro-tile.
pub const MR: usize = 12;
/// Inner block, in values (even): a tile's `B` micro-panel is then 48 KiB, as the f32 kernel's.
const KC: usize = 768;
/// Columns per block of `B`, which stays in L2 across the row tiles.
const NC: usize = 256;

/// Whether this CPU has the instructions (AVX512_BF16 implies AVX512F and BW on every CPU that
/// has it; all three are checked).
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512bf16")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
}

/// Conversions shorter than this many words run on one thread.
const PARALLEL_MIN_WORDS: usize = 1 << 14;

/// Words of `A`'s conversion ([`convert_a`]).
pub fn converted_len(m: usize, k: usize) -> usize {
    m * pairs(k)
}

/// Words of `B`'s packing ([`pack_b`]): whole panels.
pub fn packed_len(k: usize, n: usize) -> usize {
    pairs(k) * n.div_ceil(PANEL) * PANEL
}

/// Where `A`'s pairs landed: pair `q` of row `i` is `words[i * rs + q * cs]`.
#[derive(Clone, Copy)]
pub struct Pairs<'a> {
    pub words: &'a [u32],
    pub rs: usize,
    pub cs: usize,
}

/// Converts `A` (`m x k`, any strides) into `out` (at least [`converted_len`] words).
///
/// Panics if `out` is too short.
pub fn convert_a<'o>(a: MatRef<'_>, out: &'o mut [u32]) -> Pairs<'o> {
    let (m, k, kq) = (a.rows, a.cols, pairs(a.cols));
    assert!(m > 0 && k > 0, "convert_a: an empty matrix");
    let out = &mut out[..converted_len(m, k)];
    if a.rs == 1 && a.cs != 1 {
        // Transposed: rows 2q and 2q + 1 of the stored matrix are contiguous over i.
        out.par_chunks_exact_mut(m).with_min_len(PARALLEL_MIN_WORDS.div_ceil(m)).enumerate().for_each(|(q, dst)| {
            let first = &a.data[2 * q * a.cs..][..m];
            let second = (2 * q + 1 < k).then(|| &a.data[(2 * q + 1) * a.cs..][..m]);
            interleave(first, second, dst);
        });
        return Pairs { words: out, rs: 1, cs: m };
    }
    out.par_chunks_exact_mut(kq).with_min_len(PARALLEL_MIN_WORDS.div_ceil(kq)).enumerate().for_each(|(i, dst)| {
        if a.cs == 1 {
            return convert_row(&a.data[i * a.rs..][..k], dst);
        }
        for (q, w) in dst.iter_mut().enumerate() {
            let at = |p: usize| if p < k { a.data[i * a.rs + p * a.cs] } else { 0.0 };
            *w = pair(at(2 * q), at(2 * q + 1));
        }
    });
    Pairs { words: out, rs: kq, cs: 1 }
}

/// A contiguous row to consecutive pairs (`dst` has `pairs(row.len())` words), 32 values at a
/// time with the instructions: their bf16 in order are already the pairs.
pub(super) fn convert_row(row: &[f32], dst: &mut [u32]) {
    let done = if available() { row.len() / 32 * 32 } else { 0 };
    // SAFETY: the instructions were detected; `done` values are read and `done / 2` words written.
    unsafe { convert_32s(row.as_ptr(), dst.as_mut_ptr(), done) };
    for (q, w) in dst.iter_mut().enumerate().skip(done / 2) {
        let at = |p: usize| row.get(p).copied().unwrap_or(0.0);
        *w = pair(at(2 * q), at(2 * q + 1));
    }
}

/// # Safety
/// The instructions are available (or `len` is 0); `len` (a multiple of 32) values are readable
/// at `src` and `len / 2` words writable at `dst`.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
unsafe fn convert_32s(src: *const f32, dst: *mut u32, len: usize) {
    for p in (0..len).step_by(32) {
        // SAFETY: the caller's contract.
        unsafe {
            let both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src.add(p + 16)), _mm512_loadu_ps(src.add(p)));
            _mm512_storeu_si512(dst.add(p / 2).cast(), std::mem::transmute::<__m512bh, __m512i>(both));
        }
    }
}

/// Packs `B` (`k x n`, any strides) into panels (at least [`packed_len`] words; columns past `n`
/// are zero).
///
/// Panics if `out` is too short.
pub fn pack_b(b: MatRef<'_>, out: &mut [u32]) {
    let (k, n, kq) = (b.rows, b.cols, pairs(b.rows));
    assert!(k > 0 && n > 0, "pack_b: an empty matrix");
    let panels = out[..packed_len(k, n)].par_chunks_exact_mut(kq * PANEL);
    panels.with_min_len(PARALLEL_MIN_WORDS.div_ceil(kq * PANEL)).enumerate().for_each(|(t, panel)| {
        let (j0, width) = (t * PANEL, PANEL.min(n - t * PANEL));
        if b.rs == 1 && b.cs != 1 {
            // Transposed (`Wᵀ`): each column's values are contiguous; convert a run of them to
            // pairs, then write the pairs down the panel.
            const RUN: usize = 256;
            let mut words = [0u32; RUN];
            for j in 0..PANEL {
                for q0 in (0..kq).step_by(RUN) {
                    let len = RUN.min(kq - q0);
                    if j < width {
                        let p0 = 2 * q0;
                        convert_row(&b.data[(j0 + j) * b.cs + p0..][..(2 * len).min(k - p0)], &mut words[..len]);
                    } else {
                        words[..len].fill(0);
                    }
                    for (q, &w) in words[..len].iter().enumerate() {
                        panel[(q0 + q) * PANEL + j] = w;
                    }
                }
            }
            return;
        }
        for (q, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            if b.cs == 1 {
                let first = &b.data[2 * q * b.rs + j0..][..width];
                let second = (2 * q + 1 < k).then(|| &b.data[(2 * q + 1) * b.rs + j0..][..width]);
                interleave(first, second, &mut row[..width]);
            } else {
                for (j, w) in row[..width].iter_mut().enumerate() {
                    let at = |p: usize| if p < k { b.data[p * b.rs + (j0 + j) * b.cs] } else { 0.0 };
                    *w = pair(at(2 * q), at(2 * q + 1));
                }
            }
            row[width..].fill(0);
        }
    });
}

/// `dst[j] = pair(first[j], second[j])` (`second` absent: zero), 16 at a time with the
/// instructions, the rest one by one.
pub(super) fn interleave(first: &[f32], second: Option<&[f32]>, dst: &mut [u32]) {
    let mut done = 0;
    if let (Some(second), true) = (second, available()) {
        done = dst.len() / 16 * 16;
        // SAFETY: the instructions were detected; `done` values of each slice are in bounds.
        unsafe { interleave_16s(first.as_ptr(), second.as_ptr(), dst.as_mut_ptr(), done) };
    }
    for j in done..dst.len() {
        dst[j] = pair(first[j], second.map_or(0.0, |s| s[j]));
    }
}

/// # Safety
/// The instructions are available; `len` (a multiple of 16) values are readable from `first` and
/// `second`, and writable at `dst`.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
unsafe fn interleave_16s(first: *const f32, second: *const f32, dst: *mut u32, len: usize) {
    // Word j of the result takes bf16 j of the low half (first) and bf16 j of the high half.
    let order = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
        16, 0,
    );
    for j in (0..len).step_by(16) {
        // SAFETY: the caller's contract.
        unsafe {
            let both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(second.add(j)), _mm512_loadu_ps(first.add(j)));
            let words = _mm512_permutexvar_epi16(order, std::mem::transmute::<__m512bh, __m512i>(both));
            _mm512_storeu_si512(dst.add(j).cast(), words);
        }
    }
}

/// `C[rows, cols] = A B + beta C` from the converted operands, on the calling thread. `cols`
/// starts on a panel boundary.
///
/// # Safety
/// The instructions are available; `out` covers the panel, which no other thread touches;
/// `a` holds `rows` and `packed` the panels of `cols`, for `k` inner values.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
pub unsafe fn panel(a: Pairs<'_>, packed: &[u32], k: usize, rows: Range<usize>, cols: Range<usize>, out: Out) {
    let Out { c, ldc, beta } = out;
    let kq = pairs(k);
    let (ap, bp) = (a.words.as_ptr(), packed.as_ptr());
    let mut q0 = 0;
    while q0 < kq {
        let depth = (KC / 2).min(kq - q0);
        let first = q0 == 0;
        let mut j0 = cols.start;
        while j0 < cols.end {
            let nc = NC.min(cols.end - j0);
            let mut i = rows.start;
            while i < rows.end {
                let mr = MR.min(rows.end - i);
                let mut j = j0;
                while j < j0 + nc {
                    // SAFETY: every address stays in the converted operands and the panel.
                    unsafe {
                        let t = Tile {
                            a: ap.add(i * a.rs + q0 * a.cs).cast(),
                            a_rs: a.rs,
                            a_cs: a.cs,
                            b: bp.add(j / PANEL * kq * PANEL + q0 * PANEL).cast(),
                            depth,
                            c: c.add(i * ldc + j),
                            ldc,
                            width: PANEL.min(j0 + nc - j),
                        };
                        with_rows!(mr, R => run::<R>(&t, first, beta); 12 11 10 9 8 7 6 5 4 3 2 1);
                    }
                    j += PANEL;
                }
                i += MR;
            }
            j0 += nc;
        }
        q0 += depth;
    }
}

/// The implicit GEMM of `super::segmented` on pairs: `C[i, :] (+)= sum over segments s and
/// pairs t of A[i rs + offsets[s] + t cs] · Bp[s seg_len + t, :]`, where each `A` word is a pair
/// of the inner dimension (strides, offsets and `seg_len` in words) and `Bp` holds `n` columns
/// of pair-rows packed by `super::pack_pair_panels`. `C` is overwritten (`out.beta` 0) or added
/// to (1).
///
/// # Safety
/// The instructions are available, and every address formed lies in the buffers (checked by the
/// safe wrapper `super::segmented_bf16`).
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
pub unsafe fn segmented(a: &Segments<'_, u32>, packed: *const u32, n: usize, out: Out) {
    let (rows, (rs, cs)) = (a.rows, a.strides);
    let depth = a.offsets.len() * a.seg_len;
    let mut i = 0;
    while i < rows {
        let mr = MR.min(rows - i);
        let mut j = 0;
        while j < n {
            // SAFETY: per the contract.
            unsafe {
                let t = Tile {
                    a: a.a.as_ptr().add(i * rs).cast(),
                    a_rs: rs,
                    a_cs: cs,
                    b: packed.add(j / PANEL * depth * PANEL).cast(),
                    depth,
                    c: out.c.add(i * out.ldc + j),
                    ldc: out.ldc,
                    width: PANEL.min(n - j),
                };
                with_rows!(mr, R => run_segments::<R>(&t, a, out.beta); 12 11 10 9 8 7 6 5 4 3 2 1);
            }
            j += PANEL;
        }
        i += MR;
    }
}

/// [`run`] over segmented pairs (the tile's `a` is row 0's origin), writing `C = A B + keep C`.
///
/// # Safety
/// As [`segmented`].
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
#[inline]
unsafe fn run_segments<const R: usize>(t: &Tile, a: &Segments<'_, u32>, keep: f32) {
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let origin = t.a.cast::<i32>();
        let mut brow = t.b.cast::<u32>();
        let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
        for &offset in a.offsets {
            let seg = origin.add(offset);
            for s in 0..a.seg_len {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(brow.cast()));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(brow.add(16).cast()));
                brow = brow.add(PANEL);
                let acol = seg.add(s * t.a_cs);
                for r in 0..R {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*acol.add(r * t.a_rs)));
                    acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
                    acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
                }
            }
        }
        store::<Zmm, R>(t, &acc0.map(Zmm), &acc1.map(Zmm), keep);
    }
}

/// One tile: `depth` pairs; the tile's `a` and `b` point at 32-bit pairs (strides in pairs,
/// panel rows [`PANEL`] pairs apart).
///
/// # Safety
/// As [`panel`].
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
#[inline]
unsafe fn run<const R: usize>(t: &Tile, first: bool, beta: f32) {
    // SAFETY: the caller's contract covers every address formed here.
    unsafe {
        let (a, b) = (t.a.cast::<i32>(), t.b.cast::<u32>());
        let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
        for q in 0..t.depth {
            let brow = b.add(q * PANEL);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(brow.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(brow.add(16).cast()));
            let acol = a.add(q * t.a_cs);
            for r in 0..R {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*acol.add(r * t.a_rs)));
                acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
                acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
            }
        }
        store::<Zmm, R>(t, &acc0.map(Zmm), &acc1.map(Zmm), if first { beta } else { 1.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::bf16_bits;

    fn values(len: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.013 + (i % 3) as f32 * 1e-3).collect()
    }

    #[test]
    fn rounding_is_to_nearest_with_ties_to_even() {
        // bf16 keeps 8 significant bits: near 1 its step is 2^-7.
        let step = 2f32.powi(-7);
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + step / 2.0), 0x3F80); // tie, to the even 1.0
        assert_eq!(bf16_bits(1.0 + 1.5 * step), 0x3F82); // tie, to the even 1 + 2 step
        assert_eq!(bf16_bits(1.0 + step * 0.51), 0x3F81);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        assert_eq!(bf16_bits(f32::INFINITY), 0x7F80);
        assert!(f32::from_bits(u32::from(bf16_bits(f32::NAN)) << 16).is_nan());
        // Against the nearer of the two neighbouring bf16 values, measured in f64 (ties: the one
        // with an even last bit), over ordinary values, a subnormal and the edge of overflow.
        for x in values(1000).into_iter().chain([1e-30, 1e-40, -3.4e38, 65504.0, 0.1]) {
            let down = f32::from_bits(x.to_bits() & 0xFFFF_0000);
            let up = f32::from_bits((x.to_bits() & 0xFFFF_0000) + 0x1_0000);
            // Past the largest finite bf16, the next step up is 2^128, which rounds to infinity.
            let up_value = if up.is_infinite() { 2f64.powi(128).copysign(f64::from(x)) } else { f64::from(up) };
            let (to_down, to_up) = ((f64::from(x) - f64::from(down)).abs(), (up_value - f64::from(x)).abs());
            let even_down = (down.to_bits() >> 16) & 1 == 0;
            let want = if to_down < to_up || (to_down == to_up && even_down) { down } else { up };
            assert_eq!(f32::from_bits(u32::from(bf16_bits(x)) << 16), want, "{x}");
            assert_eq!(crate::gemm::round_bf16(x), want, "{x}");
        }
    }

    #[test]
    fn conversions_pair_the_inner_dimension_as_the_scalar_rounding_does() {
        // 70 columns: two vector steps of 32 (or 16) values and a tail; k = 7 is odd (a zero half).
        let (m, k) = (5, 70);
        let data = values(m * k);
        let a = MatRef::row_major(&data, m, k);
        let mut out = vec![0; converted_len(m, k)];
        let row_major = convert_a(a, &mut out);
        let t_data = values(k * m);
        let at = MatRef::row_major(&t_data, k, m).t(); // m x k, transposed storage
        let mut t_out = vec![0; converted_len(m, k)];
        let transposed = convert_a(at, &mut t_out);
        for i in 0..m {
            for q in 0..pairs(k) {
                let get = |v: MatRef<'_>, p: usize| if p < k { v.data[i * v.rs + p * v.cs] } else { 0.0 };
                assert_eq!(
                    row_major.words[i * row_major.rs + q * row_major.cs],
                    pair(get(a, 2 * q), get(a, 2 * q + 1))
                );
                assert_eq!(
                    transposed.words[i * transposed.rs + q * transposed.cs],
                    pair(get(at, 2 * q), get(at, 2 * q + 1))
                );
            }
        }
        // B: 7 x 40 (an odd pair-row, a partial second panel), row-major and transposed.
        let (k, n) = (7, 40);
        let b_data = values(k * n);
        for b in [MatRef::row_major(&b_data, k, n), MatRef::row_major(&b_data, n, k).t()] {
            let mut packed = vec![u32::MAX; packed_len(k, n)];
            pack_b(b, &mut packed);
            for q in 0..pairs(k) {
                for j in 0..2 * PANEL {
                    let get = |p: usize| if p < k && j < n { b.data[p * b.rs + j * b.cs] } else { 0.0 };
                    let word = packed[j / PANEL * pairs(k) * PANEL + q * PANEL + j % PANEL];
                    assert_eq!(word, pair(get(2 * q), get(2 * q + 1)), "pair-row {q}, column {j}");
                }
            }
        }
    }
}
