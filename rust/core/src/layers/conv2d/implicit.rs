//! The implicit-GEMM convolution's weight gradient, from what training keeps of each sample.

use rayon::prelude::*;

use crate::gemm::{self, as_words, pairs};

use super::grid::{implicit_possible, PaddedGrid};
use super::Axis;

/// Forward and weight gradient on the input's padded grid, kept for backward instead of the
/// patch matrix:
///
/// - forward: `Z = grid (*) W`, [`PaddedGrid::convolve`];
/// - weight gradient, one block of `dW` rows per task: `dW[block] = sum over samples and output
///   rows oy of grid[oy + u, ..]ᵀ · dZ[oy, ..]`, where a block is one kernel cell `(u, v)` (its
///   `C` rows of `dW`) when there are many channels, and one kernel row `u` (its `kw C` rows)
///   for a first layer's 1-7 channels, whose per-cell blocks would be 1-7 rows thin.
#[derive(Clone, Debug)]
pub(super) struct ImplicitConv {
    pub(super) grid: PaddedGrid,
    /// Rows of `dW` per block: `C`, or `kw C`.
    block_rows: usize,
    /// Per block, the offset of output row `oy`'s inputs: `((oy + u) width + v) C` for a cell,
    /// `(oy + u) width C` for a kernel row (its rows `(v, c)` then lie at `v C + c`).
    row_offsets: Vec<usize>,
    /// Sample groups whose blocks are summed separately, then added in group order (a count
    /// fixed by the shapes, so every thread count sums in the same order): few blocks per layer
    /// leave the threads idle without them.
    groups: usize,
    /// Whether blocks are kernel cells (else kernel rows).
    pub(super) per_cell: bool,
    /// For a bf16 weight gradient (per-cell blocks only): the offset, in the grid's column pairs
    /// ([`ImplicitConv::fill_column_pairs`]), of output row `oy`'s inputs per block, as
    /// `row_offsets`.
    pair_row_offsets: Vec<usize>,
    /// Output rows and columns.
    out: (usize, usize),
}

/// Below this many input channels, blocks are kernel rows summed in [`THIN_GROUPS`] sample groups.
pub(super) const PER_CELL_MIN_CHANNELS: usize = 8;
const THIN_GROUPS: usize = 16;
/// Per-cell blocks are split into as many sample groups as make this many tasks (a 3x3 kernel
/// on 32 filters: 2 groups, 1.13x faster at 1 and 2 threads on `cnn_bn`'s second layer).
const MIN_TASKS: usize = 16;

impl ImplicitConv {
    pub(super) fn new(rows: &Axis, cols: &Axis, channels: usize, filters: usize) -> Option<Self> {
        if !implicit_possible(rows, cols) {
            return None;
        }
        let kernel = (rows.kernel, cols.kernel);
        let grid = PaddedGrid::new((rows.output, cols.output), kernel, (rows.pad_before, cols.pad_before), channels);
        let width = grid.width;
        let per_cell = channels >= PER_CELL_MIN_CHANNELS;
        let blocks: Vec<(usize, usize)> = if per_cell {
            (0..kernel.0).flat_map(|u| (0..kernel.1).map(move |v| (u, v))).collect()
        } else {
            (0..kernel.0).map(|u| (u, 0)).collect()
        };
        let row_offsets = blocks
            .iter()
            .flat_map(|&(u, v)| (0..rows.output).map(move |oy| ((oy + u) * width + v) * channels))
            .collect();
        // Kernel column v reads grid columns v + x: the pairs (v + 2q, v + 2q + 1) start at pair
        // v / 2 of the copy paired from column v mod 2.
        let (height, pair_width) = (grid.height, pairs(width));
        let pair_row_offsets = blocks
            .iter()
            .flat_map(|&(u, v)| {
                let copy = (v % 2) * height * pair_width * channels;
                (0..rows.output).map(move |oy| copy + ((oy + u) * pair_width + v / 2) * channels)
            })
            .collect();
        let (block_rows, groups) = if per_cell {
            // 9 cells x one 32-filter panel leave 2 threads 5 and 4 tasks: 2 groups make 18.
            let tasks = kernel.0 * kernel.1 * filters.div_ceil(gemm::PANEL);
            (channels, MIN_TASKS.div_ceil(tasks))
        } else {
            (kernel.1 * channels, THIN_GROUPS)
        };
        let out = (rows.output, cols.output);
        Some(Self { grid, block_rows, row_offsets, groups, per_cell, pair_row_offsets, out })
    }

    /// Words of [`Self::fill_column_pairs`]'s two copies.
    pub(super) fn column_pairs_len(&self) -> usize {
        2 * self.grid.height * pairs(self.grid.width) * self.grid.channels
    }

    /// The grid of one sample's map paired along its columns, for a bf16 weight gradient (whose
    /// inner dimension runs along the output columns): copy `s` (0 or 1) holds at `(y, q, ch)`
    /// the pair of grid cells `(y, 2q + s, ch)` and `(y, 2q + s + 1, ch)`, zero outside the map,
    /// so that kernel column `v` finds its pairs in copy `v mod 2`.
    pub(super) fn fill_column_pairs(&self, map: &[f32], cols: usize, words: &mut [u32]) {
        let g = &self.grid;
        let (c, pair_width) = (g.channels, pairs(g.width));
        let map_rows = map.len() / (cols * c);
        let cell = |y: usize, x: usize| {
            let (my, mx) = (y.checked_sub(g.top)?, x.checked_sub(g.left)?);
            (my < map_rows && mx < cols).then(|| &map[(my * cols + mx) * c..][..c])
        };
        let copies = words[..self.column_pairs_len()].chunks_exact_mut(g.height * pair_width * c);
        for (s, copy) in copies.enumerate() {
            for (i, dst) in copy.chunks_exact_mut(c).enumerate() {
                let (y, x) = (i / pair_width, 2 * (i % pair_width) + s);
                match (cell(y, x), cell(y, x + 1)) {
                    (Some(first), second) => gemm::interleave_pairs(first, second, dst),
                    (None, Some(second)) => dst.iter_mut().zip(second).for_each(|(w, &v)| *w = gemm::pair(0.0, v)),
                    (None, None) => dst.fill(0),
                }
            }
        }
    }

    /// Values of the per-group blocks of `dW`, each `block_rows x PANEL` per filter panel.
    pub(super) fn blocks_len(&self, patch: usize, filters: usize) -> usize {
        self.groups * patch * filters.div_ceil(gemm::PANEL) * gemm::PANEL
    }

    /// `dW` (row-major, `kh kw C x filters`) from the samples' kept inputs and packed `dZ`.
    /// One task per sample group, block of `dW` and 32-filter panel, so that threads share even
    /// 9 cells of a 3x3 kernel, or the 3 kernel rows of a first layer, evenly: task
    /// `(group, block, t)` sums its samples into `blocks` (scratch of [`Self::blocks_len`]), and
    /// the groups are then added in order into `dW`, so every thread count gives the same bits.
    /// Under `bf16` the operands are pairs: the inputs' column pairs
    /// ([`Self::fill_column_pairs`]) and `dZ` with each output row's columns paired.
    pub(super) fn weight_gradient(
        &self,
        s: KeptSamples<'_>,
        filters: usize,
        bf16: bool,
        blocks: &mut [f32],
        dw: &mut [f32],
    ) {
        let (c, (oh, ow), f) = (self.grid.channels, self.out, filters);
        let (width, block_rows) = (gemm::PANEL, self.block_rows);
        let patch = self.row_offsets.len() / oh * block_rows;
        let (p, pair_rows, row_pairs) = (oh * ow, oh * pairs(ow), pairs(ow));
        let per_block = f.div_ceil(width);
        let tasks_per_group = patch / block_rows * per_block;
        let blocks = &mut blocks[..self.blocks_len(patch, f)];
        blocks.par_chunks_mut(block_rows * width).enumerate().for_each(|(task, block)| {
            let (group, task) = (task / tasks_per_group, task % tasks_per_group);
            let (b, t) = (task / per_block, task % per_block);
            let cols = width.min(f - t * width);
            let samples = group * s.samples / self.groups..(group + 1) * s.samples / self.groups;
            if samples.is_empty() {
                block.fill(0.0);
            }
            for n in samples.clone() {
                let accumulate = n > samples.start;
                let (kept, panels) = (&s.kept[n * s.kept_len..], &s.dz_panels[n * s.panels_len..][..s.panels_len]);
                if bf16 {
                    let words = as_words(&kept[..self.column_pairs_len()]);
                    let panel = &as_words(panels)[t * pair_rows * width..][..pair_rows * width];
                    let offsets = &self.pair_row_offsets[b * oh..][..oh];
                    let a = gemm::Segments { a: words, strides: (1, c), offsets, seg_len: row_pairs, rows: block_rows };
                    gemm::segmented_bf16(&a, panel, cols, block, width, accumulate);
                } else {
                    let grid = &kept[..self.grid.len()];
                    let panel = &panels[t * p * width..][..p * width];
                    let offsets = &self.row_offsets[b * oh..][..oh];
                    let a = gemm::Segments { a: grid, strides: (1, c), offsets, seg_len: ow, rows: block_rows };
                    gemm::segmented(&a, panel, cols, block, width, accumulate);
                }
            }
        });
        let (first, later) = blocks.split_at(tasks_per_group * block_rows * width);
        for (task, block) in first.chunks_exact(block_rows * width).enumerate() {
            let (b, t) = (task / per_block, task % per_block);
            let cols = width.min(f - t * width);
            for (r, row) in block.chunks_exact(width).enumerate() {
                let out = &mut dw[(b * block_rows + r) * f + t * width..][..cols];
                out.copy_from_slice(&row[..cols]);
                for group in later.chunks_exact(first.len()) {
                    let row = &group[(task * block_rows + r) * width..][..cols];
                    out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
                }
            }
        }
    }
}

/// What training kept per sample for [`ImplicitConv::weight_gradient`]: sample `n`'s input
/// (its grid, or its column pairs) at `n kept_len` of `kept`, its packed `dZ` at
/// `n panels_len` of `dz_panels`.
pub(super) struct KeptSamples<'a> {
    pub kept: &'a [f32],
    pub kept_len: usize,
    pub dz_panels: &'a [f32],
    pub panels_len: usize,
    pub samples: usize,
}

/// The grid of `dZ` for the input gradient: `dX = grid (*) flipped W` (see [`PaddedGrid`]).
pub(super) fn input_gradient_grid(rows: &Axis, cols: &Axis, filters: usize) -> Option<PaddedGrid> {
    implicit_possible(rows, cols).then(|| {
        let at = (rows.kernel - 1 - rows.pad_before, cols.kernel - 1 - cols.pad_before);
        PaddedGrid::new((rows.input, cols.input), (rows.kernel, cols.kernel), at, filters)
    })
}
