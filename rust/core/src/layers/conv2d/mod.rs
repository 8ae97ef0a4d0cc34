//! 2-D convolution, channels last (note 002 §6: local receptive fields, shared weights, stride,
//! padding). Input `(H, W, C)`, kernel `(kh, kw, C, filters)` (Keras order), output
//! `(oh, ow, filters)` with, per axis (note 002 §6.4, `d` the dilation):
//!
//! - `valid`: `o = floor((n - d (f - 1) - 1) / s) + 1`, i.e. `(n + 2p - f)/s + 1` with `p = 0`
//! - `same`: `o = ceil(n / s)`, zero padding split as Keras does (the extra cell at the end)
//!
//! As a GEMM on im2col patches: row `(sample, oy, ox)` of the patch matrix holds the `kh kw C`
//! inputs under the kernel (channels contiguous, as NHWC lays them out), so `Z = patches · W` is
//! already NHWC. Backward: `dW = patchesᵀ dZ`, `db = sum dZ`, `dpatches = dZ Wᵀ`, scattered back
//! (col2im) into `dX`. With stride 1 on x86-64 machines with AVX-512 or AVX2 + FMA the same
//! products run as implicit GEMMs on a zero-bordered copy of each sample, with no patch matrix
//! (`grid.rs`: `PaddedGrid`; `implicit.rs`: `ImplicitConv` and the weight gradient).
//!
//! Under the `mixed_bfloat16` policy, on CPUs with AVX512_BF16, the three products take bf16
//! operands with f32 sums (`vdpbf16ps` multiplies pairs of the inner dimension):
//!
//! - forward and input gradient: the implicit GEMMs read a bf16 copy of the padded grid, its
//!   channels paired (an odd count padded with a zero channel, so no pair straddles two cells),
//!   against the kernel packed in the same pairs (a grid of one channel stays f32: its pairs
//!   would be half zeros);
//! - weight gradient, whose inner dimension runs along the output columns: the grid is kept with
//!   its columns paired (two copies, one per parity of the kernel column) and `dZ` is packed with
//!   each output row's columns paired. A first layer (fewer than 8 channels) keeps an f32 weight
//!   gradient (see `Conv2D::bf16_weight_gradient`);
//! - strided and dilated convolutions: the im2col products through `gemm_bf16`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::activation::{for_each_row, Activation};
use crate::error::{invalid, Result};
use crate::gemm::{self, as_words, as_words_mut, bf16_native, gemm, gemm_bf16, pairs, MatRef};
use crate::params::{ParamStore, Role};

use super::spec::{defaults, BuildContext, BuildLayer, DTypePolicy, KernelArgs, Padding};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

mod grid;
mod implicit;

use grid::PaddedGrid;
use implicit::{input_gradient_grid, ImplicitConv, KeptSamples};

/// `keras.layers.Conv2D` arguments (channels last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2DConfig {
    pub filters: usize,
    pub kernel_size: [usize; 2],
    #[serde(default = "defaults::ones2")]
    pub strides: [usize; 2],
    #[serde(default)]
    pub padding: Padding,
    #[serde(default = "defaults::ones2")]
    pub dilation_rate: [usize; 2],
    #[serde(flatten)]
    pub kernel: KernelArgs,
    #[serde(default)]
    pub dtype: DTypePolicy,
}

impl Conv2DConfig {
    /// `filters` of `kernel_size`, stride 1, `valid` padding, Keras' defaults for the rest.
    pub fn new(filters: usize, kernel_size: [usize; 2], activation: Activation) -> Self {
        Self {
            filters,
            kernel_size,
            strides: [1, 1],
            padding: Padding::Valid,
            dilation_rate: [1, 1],
            kernel: KernelArgs::new(activation),
            dtype: DTypePolicy::Float32,
        }
    }
}

impl BuildLayer for Conv2DConfig {
    fn validate(&self, name: &str) -> Result<()> {
        let sizes = [self.kernel_size, self.strides, self.dilation_rate];
        if self.filters == 0 || sizes.iter().flatten().any(|&d| d == 0) {
            return Err(invalid(format!(
                "Conv2D '{name}': filters, kernel_size, strides and dilation must be positive"
            )));
        }
        if self.dilation_rate != [1, 1] && self.strides != [1, 1] {
            return Err(invalid(format!("Conv2D '{name}': dilation_rate > 1 requires strides = 1 (as in Keras)")));
        }
        self.kernel.validate()
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let input = ctx.one_input(inputs)?;
        let k = &self.kernel;
        let mut l = Conv2D::build(
            ctx.name,
            input,
            self.filters,
            self.kernel_size,
            self.strides,
            self.dilation_rate,
            self.padding == Padding::Same,
            k.activation,
            k.use_bias,
            ctx.params,
        )?;
        // Without the instructions the policy falls back to f32 (the Python side warns).
        l.bf16 = self.dtype == DTypePolicy::MixedBfloat16 && bf16_native();
        k.init(ctx, l.kernel, l.bias);
        let shape = l.output_shape();
        Ok((Op::unary(l), shape))
    }
}

/// Geometry shared by convolution and pooling along one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub output: usize,
    /// Zero cells before the first input cell.
    pub pad_before: usize,
}

impl Axis {
    /// Output size and leading padding for `padding` = `same` or `valid`.
    pub fn new(input: usize, kernel: usize, stride: usize, dilation: usize, same: bool) -> Option<Self> {
        let span = dilation * (kernel - 1) + 1;
        let (output, pad_before) = if same {
            let output = input.div_ceil(stride);
            let total = ((output - 1) * stride + span).saturating_sub(input);
            (output, total / 2)
        } else {
            if input < span {
                return None;
            }
            ((input - span) / stride + 1, 0)
        };
        Some(Self { input, kernel, stride, dilation, output, pad_before })
    }

    /// Input coordinate read by output `o` at kernel offset `k`, if inside the input.
    #[inline]
    pub fn source(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation).checked_sub(self.pad_before).filter(|&i| i < self.input)
    }
}

/// Samples that share one padded grid in an inference pass, one after the other: the grids of a
/// large batch cost a fraction of their memory, and the groups still keep every thread busy.
const GRID_SHARERS: usize = 8;
/// Sample groups of the bias gradient's sum.
const BIAS_GROUPS: usize = 16;

#[derive(Clone, Debug)]
pub struct Conv2D {
    pub rows: Axis,
    pub cols: Axis,
    pub channels: usize,
    pub filters: usize,
    pub activation: Activation,
    pub kernel: usize,
    pub bias: Option<usize>,
    kernel_offset: usize,
    bias_offset: Option<usize>,
    implicit_dx: Option<PaddedGrid>,
    /// Boxed: it is built once and keeps `Layer` (an enum of every layer) small.
    implicit: Option<Box<ImplicitConv>>,
    /// Products on bf16 operands (`mixed_bfloat16`, where the CPU has the instructions).
    pub bf16: bool,
}

impl Conv2D {
    pub fn build(
        name: &str,
        input_shape: &[usize],
        filters: usize,
        kernel_size: [usize; 2],
        strides: [usize; 2],
        dilation: [usize; 2],
        same: bool,
        activation: Activation,
        use_bias: bool,
        params: &mut ParamStore,
    ) -> Result<Self> {
        let &[h, w, c] = input_shape else {
            return Err(invalid(format!(
                "Conv2D '{name}' expects images of shape (height, width, channels); got per-sample shape {input_shape:?}"
            )));
        };
        let too_small = || {
            invalid(format!("Conv2D '{name}': input {h}x{w} is smaller than the (dilated) kernel with padding='valid'"))
        };
        let rows = Axis::new(h, kernel_size[0], strides[0], dilation[0], same).ok_or_else(too_small)?;
        let cols = Axis::new(w, kernel_size[1], strides[1], dilation[1], same).ok_or_else(too_small)?;
        let kernel =
            params.register(format!("{name}/kernel"), vec![kernel_size[0], kernel_size[1], c, filters], Role::Kernel);
        let bias = use_bias.then(|| params.register(format!("{name}/bias"), vec![filters], Role::Bias));
        Ok(Self {
            rows,
            cols,
            channels: c,
            filters,
            activation,
            kernel,
            bias,
            kernel_offset: params.tensors[kernel].offset,
            bias_offset: bias.map(|b| params.tensors[b].offset),
            implicit_dx: input_gradient_grid(&rows, &cols, filters),
            implicit: ImplicitConv::new(&rows, &cols, c, filters).map(Box::new),
            bf16: false,
        })
    }

    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.rows.output, self.cols.output, self.filters]
    }

    /// Values per patch row: `kh kw C`.
    fn patch(&self) -> usize {
        self.rows.kernel * self.cols.kernel * self.channels
    }

    /// Output positions per sample.
    fn positions(&self) -> usize {
        self.rows.output * self.cols.output
    }

    fn in_width(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    /// Per sample: the patch matrix or the input grid (forward to backward; under bf16 the
    /// grid's pairs as well), then the `dZ` grid of the implicit input gradient (backward, once
    /// the weight gradient is done).
    fn patch_region(&self) -> usize {
        let dz_grid = self.implicit_dx.as_ref().map_or(0, PaddedGrid::len);
        (self.input_region() + self.pair_grid_width()).max(dz_grid)
    }

    /// Per sample, what training keeps of the input for the weight gradient: its padded grid
    /// (implicit), its grid's column pairs (implicit, bf16) or its patch matrix.
    fn input_region(&self) -> usize {
        match &self.implicit {
            Some(g) if self.bf16_weight_gradient() => g.column_pairs_len(),
            Some(g) => g.grid.len(),
            None => self.positions() * self.patch(),
        }
    }

    /// Whether an implicit product over a grid of `channels` (the input's, or `dZ`'s of `filters`)
    /// takes bf16 pairs of channels. A grid of one channel would pair each value with a zero:
    /// no fewer instructions than f32, and the copy on top (`cnn_lenet`'s first layer ran its
    /// forward pass 1.3x slower), so it stays f32.
    fn pairs_grid(&self, channels: usize) -> bool {
        self.bf16 && channels > 1
    }

    /// Whether the implicit weight gradient takes bf16 operands: under bf16, for blocks of one
    /// kernel cell. A first layer's blocks of whole kernel rows (fewer than
    /// [`implicit::PER_CELL_MIN_CHANNELS`] channels) read kernel columns at two parities in one
    /// tile, which the column pairs do not lay out; they stay f32, a small share of the work.
    fn bf16_weight_gradient(&self) -> bool {
        self.bf16 && self.implicit.as_ref().is_some_and(|g| g.per_cell)
    }

    /// Per sample: `dZ` packed for the implicit weight gradient; none when `dZ` is one panel wide
    /// already (32 filters), as it is then laid out as packed. Under bf16: pair panels, each
    /// output row's columns paired.
    fn dz_panels(&self) -> usize {
        match &self.implicit {
            Some(_) if self.bf16_weight_gradient() => {
                gemm::pair_panels_len(self.rows.output * pairs(self.cols.output), self.filters)
            }
            Some(_) if self.filters != gemm::PANEL => gemm::packed_len(self.positions(), self.filters),
            _ => 0,
        }
    }

    /// Per sample, in training: the bf16 copy of the input's grid (channels paired), which the
    /// forward product reads. It lies after what the weight gradient keeps ([`Self::input_region`]:
    /// the f32 grid, or its column pairs) in the sample's region.
    fn pair_grid_width(&self) -> usize {
        match &self.implicit {
            Some(g) if self.pairs_grid(self.channels) => g.grid.pair_len(),
            _ => 0,
        }
    }

    /// The kernel packed for the implicit forward product: `W` (`kh kw C x filters`) in f32
    /// panels, or in bf16 pairs of channels (which take no more room).
    fn pack_forward(&self, w: &[f32], out: &mut [f32]) {
        let (k, f, c) = (self.patch(), self.filters, self.channels);
        if !self.pairs_grid(c) {
            return gemm::pack_block(MatRef::row_major(w, k, f), (0, k), (0, f), out);
        }
        let cell = pairs(c);
        let at = |cell_index: usize, ch: usize, j: usize| if ch < c { w[(cell_index * c + ch) * f + j] } else { 0.0 };
        gemm::pack_pair_panels(
            k / c * cell,
            f,
            |q, j| (at(q / cell, 2 * (q % cell), j), at(q / cell, 2 * (q % cell) + 1, j)),
            as_words_mut(out),
        );
    }

    /// The flipped kernel of the implicit input gradient,
    /// `B[(u kw + v) f + q, ch] = W[kh-1-u, kw-1-v, ch, q]`, in f32 panels or in bf16 pairs of
    /// filters `q`.
    fn pack_flipped(&self, w: &[f32], out: &mut [f32]) {
        let (kh, kw, c, f) = (self.rows.kernel, self.cols.kernel, self.channels, self.filters);
        let at = |cell: usize, q: usize, ch: usize| {
            let (ky, kx) = (kh - 1 - cell / kw, kw - 1 - cell % kw);
            if q < f {
                w[((ky * kw + kx) * c + ch) * f + q]
            } else {
                0.0
            }
        };
        if !self.pairs_grid(f) {
            return gemm::pack_panels(kh * kw * f, c, |row, ch| at(row / f, row % f, ch), out);
        }
        let per_cell = pairs(f);
        gemm::pack_pair_panels(
            kh * kw * per_cell,
            c,
            |r, ch| (at(r / per_cell, 2 * (r % per_cell), ch), at(r / per_cell, 2 * (r % per_cell) + 1, ch)),
            as_words_mut(out),
        );
    }

    /// `C = A B` on the im2col path, in this layer's precision.
    fn product(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
        if self.bf16 {
            gemm_bf16(a, b, 0.0, c)
        } else {
            gemm(a, b, 0.0, c)
        }
    }

    fn forward_panels(&self) -> usize {
        self.implicit.as_ref().map_or(0, |_| gemm::packed_len(self.patch(), self.filters))
    }

    /// Per batch: the bias gradient's partial sums, one row of `filters` per sample group.
    fn bias_partials(&self) -> usize {
        self.bias_offset.map_or(0, |_| BIAS_GROUPS * self.filters)
    }

    /// Per batch: the packed kernel in forward, the weight gradient's blocks in backward.
    fn kernel_scratch(&self) -> usize {
        self.implicit.as_ref().map_or(0, |g| self.forward_panels().max(g.blocks_len(self.patch(), self.filters)))
    }

    fn flipped_panels(&self) -> usize {
        gemm::packed_len(self.patch() / self.channels * self.filters, self.channels)
    }

    /// Input column of kernel column 0 for output column `ox`, when the whole kernel row lies
    /// inside the input and is contiguous there (no dilation): then a patch row's `kw C` values
    /// for one kernel row are one slice of the input.
    fn contiguous_run(&self, ox: usize) -> Option<usize> {
        let a = &self.cols;
        let start = (ox * a.stride).checked_sub(a.pad_before)?;
        (a.dilation == 1 && start + a.kernel <= a.input).then_some(start)
    }

    /// Fills the patch matrix of one sample.
    fn im2col(&self, x: &[f32], patches: &mut [f32]) {
        let (c, k, kw) = (self.channels, self.patch(), self.cols.kernel);
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &mut patches[(oy * self.cols.output + ox) * k..][..k];
                let run = self.contiguous_run(ox);
                for (ky, seg) in row.chunks_exact_mut(kw * c).enumerate() {
                    let Some(iy) = self.rows.source(oy, ky) else {
                        seg.fill(0.0);
                        continue;
                    };
                    let line = &x[iy * self.cols.input * c..][..self.cols.input * c];
                    if let Some(ix) = run {
                        seg.copy_from_slice(&line[ix * c..][..kw * c]);
                        continue;
                    }
                    for (kx, dst) in seg.chunks_exact_mut(c).enumerate() {
                        match self.cols.source(ox, kx) {
                            Some(ix) => dst.copy_from_slice(&line[ix * c..][..c]),
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }

    /// Adds the patch-matrix gradient of one sample back into its input gradient.
    fn col2im(&self, dpatches: &[f32], dx: &mut [f32]) {
        let (c, k, kw) = (self.channels, self.patch(), self.cols.kernel);
        dx.fill(0.0);
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &dpatches[(oy * self.cols.output + ox) * k..][..k];
                let run = self.contiguous_run(ox);
                for (ky, seg) in row.chunks_exact(kw * c).enumerate() {
                    let Some(iy) = self.rows.source(oy, ky) else { continue };
                    let line = &mut dx[iy * self.cols.input * c..][..self.cols.input * c];
                    if let Some(ix) = run {
                        line[ix * c..][..kw * c].iter_mut().zip(seg).for_each(|(d, s)| *d += s);
                        continue;
                    }
                    for (kx, src) in seg.chunks_exact(c).enumerate() {
                        if let Some(ix) = self.cols.source(ox, kx) {
                            line[ix * c..][..c].iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        }
                    }
                }
            }
        }
    }
}

impl LayerKernel for Conv2D {
    /// Scratch per sample: the patch matrix (or, in backward, the padded grid of the implicit
    /// input gradient), plus `z` when the activation's derivative needs it.
    fn saved_width(&self) -> usize {
        self.patch_region()
            + self.dz_panels()
            + if self.activation.needs_input() { self.positions() * self.filters } else { 0 }
    }

    /// Scratch per batch: the packed kernel (implicit forward) or the weight gradient's blocks
    /// (implicit backward), then the packed flipped kernel (implicit input gradient).
    fn saved_extra(&self) -> usize {
        self.kernel_scratch() + self.implicit_dx.as_ref().map_or(0, |_| self.flipped_panels()) + self.bias_partials()
    }

    /// Inference keeps nothing: per sample the input's patch matrix, or a share of a padded
    /// grid ([`GRID_SHARERS`] samples take turns on one).
    fn inference_width(&self) -> usize {
        match &self.implicit {
            Some(g) => g.grid.len().div_ceil(GRID_SHARERS),
            None => self.input_region(),
        }
    }

    /// Inference: one more grid (the groups of samples round up), and the packed kernel of the
    /// implicit forward, at the end.
    fn inference_extra(&self) -> usize {
        self.implicit.as_ref().map_or(0, |g| g.grid.len() + self.forward_panels())
    }

    fn final_activation(&self) -> Activation {
        self.activation
    }

    fn forward(&self, fp: ForwardPass<'_>) {
        let ForwardPass { params, input, output, saved, rows, keep, .. } = fp;
        let (p, k, f, iw) = (self.positions(), self.patch(), self.filters, self.in_width());
        let m = rows * p;
        // The derivative needs z: keep it after the patches, write f(z) to the output.
        let needs_z = keep && self.activation.needs_input();
        // Training lays out `saved` for backward (see `saved_width`): one region per sample,
        // then z. Inference holds the patch matrix, or a grid per group of samples with the
        // packed kernel at the end (see `inference_width`).
        // Under bf16, a training region holds the bf16 copy of its grid after the f32 grid
        // (see `patch_region`); inference writes the copy in place of the f32 grid.
        let (region, z_saved, extra, region_width, sharers) = if keep {
            let (per_sample, extra) = saved.split_at_mut(rows * self.saved_width());
            let (region, rest) = per_sample.split_at_mut(rows * self.patch_region());
            let z_saved = if needs_z { &mut rest[rows * self.dz_panels()..] } else { &mut [][..] };
            (region, z_saved, extra, self.patch_region(), 1)
        } else if let Some(g) = &self.implicit {
            let at = saved.len() - self.forward_panels();
            let (grids, packed) = saved.split_at_mut(at);
            debug_assert!(grids.len() >= rows.div_ceil(GRID_SHARERS) * g.grid.len());
            (grids, &mut [][..], packed, g.grid.len(), GRID_SHARERS)
        } else {
            let (patches, rest) = saved.split_at_mut(rows * self.input_region());
            (patches, &mut [][..], rest, self.input_region(), 1)
        };
        let z = if needs_z { &mut z_saved[..m * f] } else { &mut output[..m * f] };
        let w = &params[self.kernel_offset..self.kernel_offset + k * f];
        let act = self.activation;
        let bias = self.bias_offset.map(|o| &params[o..o + f]);
        // Bias and activation in one pass over the output, each row while it is in cache.
        let one_pass = !needs_z && !act.is_row_wise();
        let bias_and_activation = |out: &mut [f32]| {
            for r in out.chunks_exact_mut(f) {
                if let Some(b) = bias {
                    r.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                act.forward_row(r);
            }
        };
        if let Some(g) = &self.implicit {
            let packed = &mut extra[..self.forward_panels()];
            self.pack_forward(w, packed);
            let packed: &[f32] = packed;
            let (ow, iwid, (grid_len, pair_len)) =
                (self.cols.output, self.cols.input, (g.grid.len(), g.grid.pair_len()));
            let (kept_len, bf16_weight_gradient) = (self.input_region(), self.bf16_weight_gradient());
            region
                .par_chunks_mut(region_width)
                .zip(input[..rows * iw].par_chunks(iw * sharers))
                .zip(z.par_chunks_mut(p * f * sharers))
                .for_each(|((region, xs), zs)| {
                    for (x, zs) in xs.chunks_exact(iw).zip(zs.chunks_exact_mut(p * f)) {
                        if !self.pairs_grid(self.channels) {
                            let grid = &mut region[..grid_len];
                            g.grid.fill(x, iwid, grid);
                            g.grid.convolve(grid, packed, f, zs, ow);
                        } else {
                            // Training keeps the f32 grid (or its column pairs) for the weight
                            // gradient, the bf16 copy after it; inference has the region for the
                            // copy alone.
                            let pair_grid = if keep {
                                let (kept, rest) = region.split_at_mut(kept_len);
                                if bf16_weight_gradient {
                                    g.fill_column_pairs(x, iwid, as_words_mut(kept));
                                } else {
                                    g.grid.fill(x, iwid, kept);
                                }
                                rest
                            } else {
                                &mut region[..]
                            };
                            let words = &mut as_words_mut(pair_grid)[..pair_len];
                            g.grid.fill_pairs(x, iwid, words);
                            g.grid.convolve_pairs(words, as_words(packed), f, zs, ow);
                        }
                        if one_pass {
                            // While this sample's output is still in cache.
                            bias_and_activation(zs);
                        }
                    }
                });
            if one_pass {
                return;
            }
        } else {
            let patches = &mut region[..rows * p * k];
            patches.par_chunks_mut(p * k).zip(input[..rows * iw].par_chunks(iw)).for_each(|(pc, x)| self.im2col(x, pc));
            self.product(MatRef::row_major(patches, m, k), MatRef::row_major(w, k, f), z);
            if one_pass {
                for_each_row(z, f, |_, r| bias_and_activation(r));
                return;
            }
        }
        if let Some(b) = bias {
            for_each_row(z, f, |_, r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        }
        if needs_z {
            output[..m * f].copy_from_slice(&z_saved[..m * f]);
        }
        act.forward(&mut output[..m * f], f);
    }

    fn backward(&self, bp: BackwardPass<'_>) {
        let (p, k, f, iw) = (self.positions(), self.patch(), self.filters, self.in_width());
        let (rows, m) = (bp.rows, bp.rows * self.positions());
        let (per_sample, extra) = bp.saved.split_at_mut(rows * self.saved_width());
        let (region, rest) = per_sample.split_at_mut(rows * self.patch_region());
        let (dz_panels, rest) = rest.split_at_mut(rows * self.dz_panels());
        let (kernel_scratch, extra) = extra.split_at_mut(self.kernel_scratch());
        let dz = &mut bp.grad_out[..m * f];
        if !bp.skip_activation {
            let z = if self.activation.needs_input() { &rest[..m * f] } else { &[][..] };
            self.activation.backward(z, &bp.output[..m * f], dz, f);
        }
        let dz: &[f32] = dz;
        let ko = self.kernel_offset;
        let dw = &mut bp.grads[ko..ko + k * f];
        if let Some(g) = &self.implicit {
            let (oh, ow) = (self.rows.output, self.cols.output);
            let bf16 = self.bf16_weight_gradient();
            // Under bf16, output row oy's columns 2q and 2q + 1 make pair-row oy pairs(ow) + q.
            let (pair_rows, row_pairs) = (oh * pairs(ow), pairs(ow));
            let panels_len = if bf16 { self.dz_panels() } else { gemm::packed_len(p, f) };
            let dz_panels: &[f32] = if self.dz_panels() == 0 {
                dz
            } else if bf16 {
                dz_panels.par_chunks_mut(panels_len).zip(dz.par_chunks(p * f)).for_each(|(pk, d)| {
                    let rows_of = move |r: usize| {
                        let (oy, x) = (r / row_pairs, 2 * (r % row_pairs));
                        let row = |x: usize| &d[(oy * ow + x) * f..][..f];
                        (row(x), (x + 1 < ow).then(|| row(x + 1)))
                    };
                    gemm::pack_pair_rows(pair_rows, f, rows_of, as_words_mut(pk));
                });
                dz_panels
            } else {
                dz_panels.par_chunks_mut(panels_len).zip(dz.par_chunks(p * f)).for_each(|(pk, d)| {
                    gemm::pack_block(MatRef::row_major(d, p, f), (0, p), (0, f), pk);
                });
                dz_panels
            };
            let kept =
                KeptSamples { kept: region, kept_len: self.patch_region(), dz_panels, panels_len, samples: rows };
            g.weight_gradient(kept, f, bf16, kernel_scratch, dw);
        } else {
            let patches = &region[..rows * p * k];
            self.product(MatRef::row_major(patches, m, k).t(), MatRef::row_major(dz, m, f), dw);
        }
        let (extra, partials) = extra.split_at_mut(extra.len() - self.bias_partials());
        if let Some(bo) = self.bias_offset {
            // db = sum of dZ's rows, per sample group in parallel, the groups then added in order
            // (a fixed count, so every thread count gives the same bits).
            partials.par_chunks_mut(f).enumerate().for_each(|(group, part)| {
                part.fill(0.0);
                let samples = group * rows / BIAS_GROUPS..(group + 1) * rows / BIAS_GROUPS;
                for r in dz[samples.start * p * f..samples.end * p * f].chunks_exact(f) {
                    part.iter_mut().zip(r).for_each(|(d, g)| *d += g);
                }
            });
            let db = &mut bp.grads[bo..bo + f];
            db.fill(0.0);
            for part in partials.chunks_exact(f) {
                db.iter_mut().zip(part).for_each(|(d, g)| *d += g);
            }
        }
        let Some(dx) = bp.grad_in else { return };
        let w = &bp.params[ko..ko + k * f];
        // The patches are no longer needed: their buffer holds what the input gradient needs.
        if let Some(g) = &self.implicit_dx {
            let c = self.channels;
            let packed = &mut extra[..self.flipped_panels()];
            self.pack_flipped(w, packed);
            let packed: &[f32] = packed;
            let (ow, iwid) = (self.cols.output, self.cols.input);
            region
                .par_chunks_mut(self.patch_region())
                .zip(dz.par_chunks(p * f))
                .zip(dx[..rows * iw].par_chunks_mut(iw))
                .for_each(|((grid, dzs), dxs)| {
                    if self.pairs_grid(f) {
                        let words = &mut as_words_mut(grid)[..g.pair_len()];
                        g.fill_pairs(dzs, ow, words);
                        g.convolve_pairs(words, as_words(packed), c, dxs, iwid);
                    } else {
                        let grid = &mut grid[..g.len()];
                        g.fill(dzs, ow, grid);
                        g.convolve(grid, packed, c, dxs, iwid);
                    }
                });
            return;
        }
        {
            let patches = &mut region[..rows * p * k];
            let w = MatRef::row_major(w, k, f);
            self.product(MatRef::row_major(dz, m, f), w.t(), patches);
            dx[..rows * iw].par_chunks_mut(iw).zip(patches.par_chunks(p * k)).for_each(|(d, pc)| self.col2im(pc, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_note_002_and_keras() {
        // valid: (n - f)/s + 1; same: ceil(n/s).
        assert_eq!(Axis::new(28, 3, 1, 1, false).unwrap().output, 26);
        assert_eq!(Axis::new(28, 5, 2, 1, false).unwrap().output, 12);
        assert_eq!(Axis::new(28, 3, 2, 1, true).unwrap().output, 14);
        assert_eq!(Axis::new(7, 3, 1, 2, false).unwrap().output, 3);
        let a = Axis::new(8, 3, 2, 1, true).unwrap();
        assert_eq!((a.output, a.pad_before), (4, 0)); // total padding 1, placed after
        assert!(Axis::new(2, 3, 1, 1, false).is_none());
    }
}
