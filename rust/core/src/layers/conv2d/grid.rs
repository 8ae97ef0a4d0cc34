//! The padded grid of an implicit-GEMM convolution: one sample's map in a zero border, read by
//! the segmented products with no patch matrix, in f32 or as bf16 pairs of channels.

use crate::gemm::{self, pairs};

use super::Axis;

/// One sample's map copied into a zero border, for a stride-1, undilated convolution as an
/// implicit GEMM (where the machine has the segmented kernel): output cell `(y, x)` of a
/// `kh x kw` kernel reads grid cells `(y + u, x + v)`. The `kw` cells of one kernel row are
/// adjacent in the grid, so each kernel row `u` is one segment of `kw C` values, and no patch
/// matrix (`kh kw` copies of the map) is built.
///
/// Two grids per convolution: the input, for the forward pass and the weight gradient; and
/// `dZ`, for the input gradient (a transposed convolution is a convolution of the padded `dZ`
/// with the flipped kernel).
#[derive(Clone, Debug)]
pub(super) struct PaddedGrid {
    pub(super) height: usize,
    pub(super) width: usize,
    /// Where the map's first cell lies in the grid.
    pub(super) top: usize,
    pub(super) left: usize,
    pub(super) channels: usize,
    /// Offset of each kernel row `u`: `u width channels`; its segment is `kw channels` long.
    offsets: Vec<usize>,
    segment: usize,
    /// The same in the bf16 copy ([`PaddedGrid::fill_pairs`]), counted in 32-bit words: each
    /// cell holds `pairs(channels)` words.
    pair_offsets: Vec<usize>,
    pair_segment: usize,
}

impl PaddedGrid {
    /// The grid holding every cell that `out` outputs of a `kernel` read.
    pub(super) fn new(
        out: (usize, usize),
        kernel: (usize, usize),
        (top, left): (usize, usize),
        channels: usize,
    ) -> Self {
        let (height, width) = (out.0 + kernel.0 - 1, out.1 + kernel.1 - 1);
        let offsets = (0..kernel.0).map(|u| u * width * channels).collect();
        let cell = pairs(channels);
        let pair_offsets = (0..kernel.0).map(|u| u * width * cell).collect();
        Self {
            height,
            width,
            top,
            left,
            channels,
            offsets,
            segment: kernel.1 * channels,
            pair_offsets,
            pair_segment: kernel.1 * cell,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Words of the bf16 copy: at most [`Self::len`], so it fits where the f32 grid would.
    pub(super) fn pair_len(&self) -> usize {
        self.height * self.width * pairs(self.channels)
    }

    /// Copies one sample's map into its zero-bordered grid of bf16 pairs: each cell's channels
    /// paired in order, an odd last channel with a zero.
    pub(super) fn fill_pairs(&self, map: &[f32], cols: usize, words: &mut [u32]) {
        let (c, cell) = (self.channels, pairs(self.channels));
        words.fill(0);
        for (y, line) in map.chunks_exact(cols * c).enumerate() {
            let dst = &mut words[((y + self.top) * self.width + self.left) * cell..][..cols * cell];
            if c % 2 == 0 {
                gemm::to_pairs(line, dst);
            } else {
                to_pairs_with_zero_channel(line, c, dst);
            }
        }
    }

    /// [`Self::convolve`] on the bf16 copy, with `packed` from [`gemm::pack_pair_panels`] in the
    /// grid's pairs (pair-row `(u kw + v) pairs(C) + q` holds channels `2q` and `2q + 1` of cell
    /// `(u, v)`).
    pub(super) fn convolve_pairs(&self, words: &[u32], packed: &[u32], n: usize, out: &mut [f32], cols: usize) {
        let cell = pairs(self.channels);
        for (y, line) in out.chunks_exact_mut(cols * n).enumerate() {
            let a = gemm::Segments {
                a: &words[y * self.width * cell..],
                strides: (cell, 1),
                offsets: &self.pair_offsets,
                seg_len: self.pair_segment,
                rows: cols,
            };
            gemm::segmented_bf16(&a, packed, n, line, n, false);
        }
    }

    /// Copies one sample's map (rows of `cols` cells) into its zero-bordered grid.
    pub(super) fn fill(&self, map: &[f32], cols: usize, grid: &mut [f32]) {
        grid.fill(0.0);
        for (y, line) in map.chunks_exact(cols * self.channels).enumerate() {
            grid[((y + self.top) * self.width + self.left) * self.channels..][..line.len()].copy_from_slice(line);
        }
    }

    /// `out[y, x, :] = sum over kernel cells (u, v) of grid[y + u, x + v, :] · packed[(u, v), :]`,
    /// for rows of `cols` outputs of `n` values; `packed` from [`gemm::pack_block`] or
    /// [`gemm::pack_panels`].
    pub(super) fn convolve(&self, grid: &[f32], packed: &[f32], n: usize, out: &mut [f32], cols: usize) {
        let c = self.channels;
        for (y, line) in out.chunks_exact_mut(cols * n).enumerate() {
            let row = &grid[y * self.width * c..];
            let a =
                gemm::Segments { a: row, strides: (c, 1), offsets: &self.offsets, seg_len: self.segment, rows: cols };
            gemm::segmented(&a, packed, n, line, n, false);
        }
    }
}

/// Whether a convolution along these axes can run on padded grids.
pub(super) fn implicit_possible(rows: &Axis, cols: &Axis) -> bool {
    let plain = |a: &Axis| a.stride == 1 && a.dilation == 1;
    plain(rows) && plain(cols) && gemm::segmented_available()
}

/// `cells` of an odd number `c` of channels to pairs, each cell's last channel paired with a
/// zero: the cells are copied a run at a time into a buffer with the zero channel added, and
/// the run is converted as one row (one call per cell cost more than the convolution on a
/// first layer's 3 channels).
fn to_pairs_with_zero_channel(cells: &[f32], c: usize, dst: &mut [u32]) {
    const RUN: usize = 1024;
    let (padded, per_cell) = (c + 1, pairs(c));
    let per_run = RUN / padded;
    if per_run == 0 {
        return cells.chunks_exact(c).zip(dst.chunks_exact_mut(per_cell)).for_each(|(v, w)| gemm::to_pairs(v, w));
    }
    let mut buffer = [0.0f32; RUN];
    for (run, words) in cells.chunks(per_run * c).zip(dst.chunks_mut(per_run * per_cell)) {
        let n = run.len() / c;
        for (cell, slot) in run.chunks_exact(c).zip(buffer.chunks_exact_mut(padded)) {
            slot[..c].copy_from_slice(cell);
            slot[c] = 0.0;
        }
        gemm::to_pairs(&buffer[..n * padded], words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_channel_counts_pair_each_cell_with_a_zero_across_buffer_runs() {
        // 3 channels: 256 cells a run, so 700 cells take three; 33: 30 a run; 1025: one by one.
        for (c, cells) in [(3, 700), (33, 95), (1025, 3), (1, 5)] {
            let values: Vec<f32> = (0..c * cells).map(|i| (i % 97) as f32 * 0.25 - 9.0).collect();
            let mut got = vec![u32::MAX; cells * pairs(c)];
            to_pairs_with_zero_channel(&values, c, &mut got);
            for (cell, words) in values.chunks_exact(c).zip(got.chunks_exact(pairs(c))) {
                for (q, &w) in words.iter().enumerate() {
                    let hi = if 2 * q + 1 < c { cell[2 * q + 1] } else { 0.0 };
                    assert_eq!(w, gemm::pair(cell[2 * q], hi), "{c} channels");
                }
            }
        }
    }
}
