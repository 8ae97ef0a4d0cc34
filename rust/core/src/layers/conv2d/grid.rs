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
                line.chunks_exact(c).zip(dst.chunks_exact_mut(cell)).for_each(|(v, w)| gemm::to_pairs(v, w));
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
