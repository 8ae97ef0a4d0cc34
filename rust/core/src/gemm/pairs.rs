//! The layout of bf16 operands, for the products of the `mixed_bfloat16` policy: values rounded
//! to bfloat16 (ties to even) and paired along the inner dimension, two to a 32-bit word with
//! the first in the low half, which is what `vdpbf16ps` multiplies lane by lane (`bf16.rs`).
//! Portable: every layout is built the same way whichever kernel reads it.

use super::PANEL;

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32.
pub fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let bits = x.to_bits();
    f32::from_bits((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000)
}

/// `x` rounded to the nearest bfloat16, ties to even, as its bit pattern (NaN stays NaN).
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16; // quiet, whatever the payload
    }
    (round_bf16(x).to_bits() >> 16) as u16
}

/// One 32-bit pair: `lo` in the low half, the lane's first product.
pub fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16_bits(lo)) | (u32::from(bf16_bits(hi)) << 16)
}

/// Pairs of an inner dimension of `k` values: `k` rounded up to even, halved (an odd last value
/// is paired with a zero).
pub fn pairs(k: usize) -> usize {
    k.div_ceil(2)
}

/// Consecutive values to consecutive pairs: `dst[q] = pair(values[2q], values[2q + 1])`, a zero
/// for the missing half of an odd count. `dst` holds `pairs(values.len())` words.
///
/// Panics if `dst` has another length.
pub fn to_pairs(values: &[f32], dst: &mut [u32]) {
    assert_eq!(dst.len(), pairs(values.len()), "to_pairs: destination length");
    #[cfg(target_arch = "x86_64")]
    super::bf16::convert_row(values, dst);
    #[cfg(not(target_arch = "x86_64"))]
    for (q, w) in dst.iter_mut().enumerate() {
        *w = pair(values[2 * q], values.get(2 * q + 1).copied().unwrap_or(0.0));
    }
}

/// Two rows to their pairs, column by column: `dst[j] = pair(first[j], second[j])`, a zero
/// for a missing `second`; `dst.len()` columns.
pub fn interleave_pairs(first: &[f32], second: Option<&[f32]>, dst: &mut [u32]) {
    assert!(first.len() >= dst.len() && second.is_none_or(|s| s.len() >= dst.len()), "interleave_pairs: short rows");
    #[cfg(target_arch = "x86_64")]
    super::bf16::interleave(first, second, dst);
    #[cfg(not(target_arch = "x86_64"))]
    for (j, w) in dst.iter_mut().enumerate() {
        *w = pair(first[j], second.map_or(0.0, |s| s[j]));
    }
}

/// Packs `kq` pair-rows of `n` columns into panels, as [`pack_pair_panels`] does, from rows of
/// the matrix: `rows(q)` gives the two rows (`n` contiguous values each; none for a zero row)
/// that pair-row `q` pairs, e.g. consecutive rows of a row-major `B`.
pub fn pack_pair_rows<'r>(
    kq: usize,
    n: usize,
    rows: impl Fn(usize) -> (&'r [f32], Option<&'r [f32]>),
    out: &mut [u32],
) {
    for (t, panel) in out[..pair_panels_len(kq, n)].chunks_exact_mut(kq * PANEL).enumerate() {
        let (j0, width) = (t * PANEL, PANEL.min(n - t * PANEL));
        for (q, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            let (first, second) = rows(q);
            interleave_pairs(&first[j0..j0 + width], second.map(|s| &s[j0..j0 + width]), &mut row[..width]);
            row[width..].fill(0);
        }
    }
}

/// Words of `kq` pair-rows packed by [`pack_pair_panels`] for `n` columns: whole panels.
pub fn pair_panels_len(kq: usize, n: usize) -> usize {
    kq * n.div_ceil(PANEL) * PANEL
}

/// Packs `kq x n` pairs into [`PANEL`]-wide column panels, zero past `n`: panel `t` holds, for
/// each pair-row `q`, the words of columns `t PANEL ..`, [`PANEL`] words per pair-row. `b(q, j)`
/// gives the two values of pair-row `q` in column `j` (e.g. a kernel's rows `2q` and `2q + 1`).
///
/// Panics if `out` is shorter than [`pair_panels_len`].
pub fn pack_pair_panels(kq: usize, n: usize, b: impl Fn(usize, usize) -> (f32, f32), out: &mut [u32]) {
    for (t, panel) in out[..pair_panels_len(kq, n)].chunks_exact_mut(kq * PANEL).enumerate() {
        let (j0, width) = (t * PANEL, PANEL.min(n - t * PANEL));
        for (q, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            for (j, w) in row[..width].iter_mut().enumerate() {
                let (lo, hi) = b(q, j0 + j);
                *w = pair(lo, hi);
            }
            row[width..].fill(0);
        }
    }
}

/// A float scratch buffer seen as 32-bit words, for the pairs of a bf16 operand: the two types
/// have one size and alignment, and every bit pattern is valid in both.
pub fn as_words_mut(values: &mut [f32]) -> &mut [u32] {
    // SAFETY: same size and alignment, no invalid bit patterns; the borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast(), values.len()) }
}

/// [`as_words_mut`], read-only.
pub fn as_words(values: &[f32]) -> &[u32] {
    // SAFETY: as `as_words_mut`.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_panels_hold_each_pair_row_panel_by_panel_with_zero_columns_past_the_edge() {
        let (kq, n) = (3, 40);
        let value = |q: usize, j: usize| ((q * 100 + j) as f32, -((q * 100 + j) as f32));
        let mut out = vec![u32::MAX; pair_panels_len(kq, n)];
        pack_pair_panels(kq, n, value, &mut out);
        for q in 0..kq {
            for j in 0..2 * PANEL {
                let want = if j < n { pair(value(q, j).0, value(q, j).1) } else { 0 };
                assert_eq!(out[j / PANEL * kq * PANEL + q * PANEL + j % PANEL], want, "({q}, {j})");
            }
        }
        // The same panels from whole rows, the second of the last pair-row missing.
        let rows: Vec<Vec<f32>> = (0..2 * kq).map(|r| (0..n).map(|j| (r * 50 + j) as f32).collect()).collect();
        let mut from_rows = vec![u32::MAX; pair_panels_len(kq, n)];
        pack_pair_rows(kq, n, |q| (&rows[2 * q][..], (q + 1 < kq).then(|| &rows[2 * q + 1][..])), &mut from_rows);
        let mut want = vec![0; pair_panels_len(kq, n)];
        pack_pair_panels(kq, n, |q, j| (rows[2 * q][j], if q + 1 < kq { rows[2 * q + 1][j] } else { 0.0 }), &mut want);
        assert_eq!(from_rows, want);
        // Odd counts pair the last value with a zero; 70 values take the vector path and a tail.
        for len in [1, 7, 70] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.37 - 3.0).collect();
            let mut words = vec![u32::MAX; pairs(len)];
            to_pairs(&values, &mut words);
            for (q, &w) in words.iter().enumerate() {
                assert_eq!(w, pair(values[2 * q], values.get(2 * q + 1).copied().unwrap_or(0.0)));
            }
        }
    }
}
