//! Pooling, channels last (note 002 §6: pooling summarises a neighbourhood, shrinking the map).
//!
//! - max pooling: the largest value of each window (the first, in window order, among equals);
//!   backward routes the gradient to the position that won (its index is kept from forward)
//! - average pooling: the mean of each window; with `same` padding the mean is over the cells
//!   inside the input only (Keras' behaviour); backward spreads `g / count` over the window
//! - global average / max pooling: over the whole `H x W` map, one value per channel
//!
//! Output sizes follow the same rule as convolution with the pool size as kernel.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

use super::conv2d::Axis;
use super::spec::{BuildContext, BuildLayer, Padding};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// `keras.layers.MaxPooling2D` (`MAX`) and `AveragePooling2D` arguments; strides default to the
/// pool size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pooling2DConfig<const MAX: bool> {
    #[serde(default = "two2")]
    pub pool_size: [usize; 2],
    #[serde(default)]
    pub strides: Option<[usize; 2]>,
    #[serde(default)]
    pub padding: Padding,
}

pub type MaxPooling2DConfig = Pooling2DConfig<true>;
pub type AveragePooling2DConfig = Pooling2DConfig<false>;

fn two2() -> [usize; 2] {
    [2, 2]
}

impl<const MAX: bool> Pooling2DConfig<MAX> {
    pub fn new(pool_size: [usize; 2], strides: Option<[usize; 2]>, padding: Padding) -> Self {
        Self { pool_size, strides, padding }
    }
}

impl<const MAX: bool> BuildLayer for Pooling2DConfig<MAX> {
    fn validate(&self, name: &str) -> Result<()> {
        if self.pool_size.contains(&0) || self.strides.is_some_and(|s| s.contains(&0)) {
            return Err(invalid(format!("pooling layer '{name}': pool_size and strides must be positive")));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let kind = if MAX { PoolKind::Max } else { PoolKind::Average };
        let strides = self.strides.unwrap_or(self.pool_size);
        let input = ctx.one_input(inputs)?;
        let l = Pool2D::build(ctx.name, kind, input, self.pool_size, strides, self.padding == Padding::Same)?;
        let shape = l.output_shape();
        Ok((Op::unary(l), shape))
    }
}

/// `keras.layers.GlobalMaxPooling2D` (`MAX`) and `GlobalAveragePooling2D`: no arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct GlobalPooling2DConfig<const MAX: bool> {}

pub type GlobalMaxPooling2DConfig = GlobalPooling2DConfig<true>;
pub type GlobalAveragePooling2DConfig = GlobalPooling2DConfig<false>;

impl<const MAX: bool> BuildLayer for GlobalPooling2DConfig<MAX> {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let kind = if MAX { PoolKind::Max } else { PoolKind::Average };
        let l = GlobalPool2D::build(ctx.name, kind, ctx.one_input(inputs)?)?;
        let shape = vec![l.channels];
        Ok((Op::unary(l), shape))
    }
}

/// `if pick { a } else { b }` as bit masks: the channel loops then vectorise even for baseline
/// x86-64 (SSE2 has no blend, and an `if` there became one branch per lane).
#[inline(always)]
fn select(pick: bool, a: f32, b: f32) -> f32 {
    let mask = u32::from(pick).wrapping_neg();
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

#[derive(Clone, Debug)]
pub struct Pool2D {
    pub kind: PoolKind,
    pub rows: Axis,
    pub cols: Axis,
    pub channels: usize,
}

impl Pool2D {
    pub fn build(
        name: &str,
        kind: PoolKind,
        input_shape: &[usize],
        pool: [usize; 2],
        strides: [usize; 2],
        same: bool,
    ) -> Result<Self> {
        let &[h, w, c] = input_shape else {
            return Err(invalid(format!(
                "pooling layer '{name}' expects (height, width, channels); got {input_shape:?}"
            )));
        };
        let small =
            || invalid(format!("pooling layer '{name}': input {h}x{w} is smaller than the pool with padding='valid'"));
        let rows = Axis::new(h, pool[0], strides[0], 1, same).ok_or_else(small)?;
        let cols = Axis::new(w, pool[1], strides[1], 1, same).ok_or_else(small)?;
        Ok(Self { kind, rows, cols, channels: c })
    }

    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.rows.output, self.cols.output, self.channels]
    }

    fn in_width(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    fn out_width(&self) -> usize {
        self.rows.output * self.cols.output * self.channels
    }

    /// Whether the windows tile the input without overlap or padding (the usual `pool_size = 2`,
    /// `strides = pool_size` on an even map): then [`Pool2D::tiled_max_sample`] and its backward
    /// run, which keep the winner's place in its window and write each input gradient once.
    fn tiled(&self) -> bool {
        let fits = |a: &Axis| a.stride == a.kernel && a.pad_before == 0 && a.output * a.stride <= a.input;
        fits(&self.rows) && fits(&self.cols)
    }

    /// Visits every output cell `(oy, ox)` with the input cells `(iy, ix)` of its window.
    fn window(&self, oy: usize, ox: usize, mut f: impl FnMut(usize)) {
        for ky in 0..self.rows.kernel {
            for kx in 0..self.cols.kernel {
                if let (Some(iy), Some(ix)) = (self.rows.source(oy, ky), self.cols.source(ox, kx)) {
                    f(iy * self.cols.input + ix);
                }
            }
        }
    }

    /// One sample: each output cell takes, channel by channel (contiguous), the window maximum
    /// and, with `KEEP` (training), remembers in `s` the flat input index that won.
    fn max_sample<const KEEP: bool>(&self, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        let c = self.channels;
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let o = (oy * self.cols.output + ox) * c;
                let yc = &mut y[o..o + c];
                let mut first = true;
                self.window(oy, ox, |cell| {
                    let xc = &x[cell * c..cell * c + c];
                    // The first cell wins until a larger value comes, so every channel has a
                    // winner (even a window of -inf or NaN).
                    for ch in 0..c {
                        let better = first || xc[ch] > yc[ch];
                        yc[ch] = select(better, xc[ch], yc[ch]);
                        if KEEP {
                            s[o + ch] = select(better, f32::from_bits((cell * c + ch) as u32), s[o + ch]);
                        }
                    }
                    first = false;
                });
            }
        }
    }

    /// [`Pool2D::max_sample`] for tiling windows: the winner is saved as its place `ky kw + kx` in
    /// the window.
    fn tiled_max_sample<const KEEP: bool>(&self, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        let (c, (kh, kw), width, ow) =
            (self.channels, (self.rows.kernel, self.cols.kernel), self.cols.input, self.cols.output);
        for (o, yc) in y.chunks_exact_mut(c).enumerate() {
            let (oy, ox) = (o / ow, o % ow);
            let cell = |place: usize| {
                let (iy, ix) = (oy * kh + place / kw, ox * kw + place % kw);
                &x[(iy * width + ix) * c..][..c]
            };
            yc.copy_from_slice(cell(0));
            if !KEEP {
                for place in 1..kh * kw {
                    yc.iter_mut().zip(cell(place)).for_each(|(yv, &xv)| *yv = select(xv > *yv, xv, *yv));
                }
                continue;
            }
            let sc = &mut s[o * c..][..c];
            sc.fill(0.0);
            for place in 1..kh * kw {
                let at = place as f32;
                for ((yv, sv), &xv) in yc.iter_mut().zip(sc.iter_mut()).zip(cell(place)) {
                    let better = xv > *yv;
                    *yv = select(better, xv, *yv);
                    *sv = select(better, at, *sv);
                }
            }
        }
    }

    /// Backward of [`Pool2D::tiled_max_sample`]: every input cell lies in at most one window, so
    /// its gradient is written once, `g` where it won and 0 elsewhere (cells past the last
    /// window included).
    fn tiled_max_backward(&self, g: &[f32], s: &[f32], d: &mut [f32]) {
        let (c, (kh, kw), width) = (self.channels, (self.rows.kernel, self.cols.kernel), self.cols.input);
        let (oh, ow) = (self.rows.output, self.cols.output);
        for (iy, d_row) in d.chunks_exact_mut(width * c).enumerate() {
            let (oy, ky) = (iy / kh, iy % kh);
            if oy >= oh {
                d_row.fill(0.0);
                continue;
            }
            let (covered, rest) = d_row.split_at_mut(ow * kw * c);
            rest.fill(0.0);
            for (ix, dc) in covered.chunks_exact_mut(c).enumerate() {
                let (ox, place) = (ix / kw, (ky * kw + ix % kw) as f32);
                let o = (oy * ow + ox) * c;
                for ((dv, &gv), &sv) in dc.iter_mut().zip(&g[o..o + c]).zip(&s[o..o + c]) {
                    *dv = select(sv == place, gv, 0.0);
                }
            }
        }
    }

    /// One sample: each output cell is the mean of the window cells inside the input.
    fn average_sample(&self, x: &[f32], y: &mut [f32]) {
        let c = self.channels;
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let o = (oy * self.cols.output + ox) * c;
                let yc = &mut y[o..o + c];
                yc.fill(0.0);
                let mut n = 0;
                self.window(oy, ox, |cell| {
                    yc.iter_mut().zip(&x[cell * c..cell * c + c]).for_each(|(a, v)| *a += v);
                    n += 1;
                });
                let inv = 1.0 / n.max(1) as f32;
                yc.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

impl LayerKernel for Pool2D {
    /// Max pooling keeps, per output value, the flat input index that won (as `f32` bits).
    fn saved_width(&self) -> usize {
        if self.kind == PoolKind::Max {
            self.out_width()
        } else {
            0
        }
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { input, output, saved, rows, keep, .. } = p;
        let (iw, ow) = (self.in_width(), self.out_width());
        let (x, y) = (&input[..rows * iw], &mut output[..rows * ow]);
        let tiled = self.tiled();
        match self.kind {
            // Inference: the maxima alone.
            PoolKind::Max if !keep => x.par_chunks(iw).zip(y.par_chunks_mut(ow)).for_each(|(x, y)| {
                if tiled {
                    self.tiled_max_sample::<false>(x, y, &mut [])
                } else {
                    self.max_sample::<false>(x, y, &mut [])
                }
            }),
            PoolKind::Max => x
                .par_chunks(iw)
                .zip(y.par_chunks_mut(ow).zip(saved[..rows * ow].par_chunks_mut(ow)))
                .for_each(|(x, (y, s))| {
                    if tiled {
                        self.tiled_max_sample::<true>(x, y, s)
                    } else {
                        self.max_sample::<true>(x, y, s)
                    }
                }),
            PoolKind::Average => {
                x.par_chunks(iw).zip(y.par_chunks_mut(ow)).for_each(|(x, y)| self.average_sample(x, y))
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let (iw, ow, c) = (self.in_width(), self.out_width(), self.channels);
        let rows = p.rows;
        let g = &p.grad_out[..rows * ow];
        let dx = &mut dx[..rows * iw];
        match self.kind {
            PoolKind::Max => {
                let s = &p.saved[..rows * ow];
                let tiled = self.tiled();
                dx.par_chunks_mut(iw).zip(g.par_chunks(ow).zip(s.par_chunks(ow))).for_each(|(d, (g, s))| {
                    if tiled {
                        return self.tiled_max_backward(g, s, d);
                    }
                    d.fill(0.0);
                    for (gv, sv) in g.iter().zip(s) {
                        d[sv.to_bits() as usize] += gv;
                    }
                });
            }
            PoolKind::Average => {
                dx.par_chunks_mut(iw).zip(g.par_chunks(ow)).for_each(|(d, g)| {
                    d.fill(0.0);
                    for oy in 0..self.rows.output {
                        for ox in 0..self.cols.output {
                            let o = (oy * self.cols.output + ox) * c;
                            let mut n = 0;
                            self.window(oy, ox, |_| n += 1);
                            let inv = 1.0 / n.max(1) as f32;
                            self.window(oy, ox, |cell| {
                                for ch in 0..c {
                                    d[cell * c + ch] += g[o + ch] * inv;
                                }
                            });
                        }
                    }
                });
            }
        }
    }
}

/// Global average or max pooling: `(H, W, C) -> (C,)`.
#[derive(Clone, Debug)]
pub struct GlobalPool2D {
    pub kind: PoolKind,
    pub cells: usize,
    pub channels: usize,
}

impl GlobalPool2D {
    pub fn build(name: &str, kind: PoolKind, input_shape: &[usize]) -> Result<Self> {
        let &[h, w, c] = input_shape else {
            return Err(invalid(format!(
                "global pooling layer '{name}' expects (height, width, channels); got {input_shape:?}"
            )));
        };
        Ok(Self { kind, cells: h * w, channels: c })
    }
}

impl LayerKernel for GlobalPool2D {
    fn saved_width(&self) -> usize {
        if self.kind == PoolKind::Max {
            self.channels
        } else {
            0
        }
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { input, output, saved, rows, keep, .. } = p;
        let (c, iw) = (self.channels, self.cells * self.channels);
        let (x, y) = (input[..rows * iw].par_chunks(iw), output[..rows * c].par_chunks_mut(c));
        match self.kind {
            // Inference: the maxima alone (the first cell wins ties and NaN, as below).
            PoolKind::Max if !keep => x.zip(y).for_each(|(x, y)| {
                y.copy_from_slice(&x[..c]);
                for cell in x.chunks_exact(c).skip(1) {
                    y.iter_mut().zip(cell).for_each(|(yv, &xv)| *yv = select(xv > *yv, xv, *yv));
                }
            }),
            PoolKind::Average => x.zip(y).for_each(|(x, y)| {
                y.fill(0.0);
                x.chunks_exact(c).for_each(|cell| y.iter_mut().zip(cell).for_each(|(a, v)| *a += v));
                let inv = 1.0 / self.cells as f32;
                y.iter_mut().for_each(|v| *v *= inv);
            }),
            PoolKind::Max => x.zip(y).zip(saved[..rows * c].par_chunks_mut(c)).for_each(|((x, y), s)| {
                // The first cell wins until a larger value comes, so every channel has a winner
                // (even a map of -inf or NaN).
                y.copy_from_slice(&x[..c]);
                s.iter_mut().enumerate().for_each(|(ch, v)| *v = f32::from_bits(ch as u32));
                for (i, cell) in x.chunks_exact(c).enumerate().skip(1) {
                    for (ch, ((yv, sv), &xv)) in y.iter_mut().zip(s.iter_mut()).zip(cell).enumerate() {
                        let better = xv > *yv;
                        *yv = select(better, xv, *yv);
                        *sv = select(better, f32::from_bits((i * c + ch) as u32), *sv);
                    }
                }
            }),
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let (c, iw) = (self.channels, self.cells * self.channels);
        let (g, d) = (p.grad_out[..p.rows * c].par_chunks(c), dx[..p.rows * iw].par_chunks_mut(iw));
        match self.kind {
            PoolKind::Average => g.zip(d).for_each(|(g, d)| {
                let inv = 1.0 / self.cells as f32;
                d.chunks_exact_mut(c).for_each(|cell| cell.iter_mut().zip(g).for_each(|(a, g)| *a = g * inv));
            }),
            PoolKind::Max => g.zip(d).zip(p.saved[..p.rows * c].par_chunks(c)).for_each(|((g, d), s)| {
                d.fill(0.0);
                for (gv, sv) in g.iter().zip(s) {
                    d[sv.to_bits() as usize] += gv;
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of equal values (here all -inf, as a diverged network can make) is won by its
    /// first cell, so the saved winner is always a cell of the window.
    #[test]
    fn max_pooling_of_equal_values_routes_the_gradient_to_the_first_cell() {
        let (h, w, c) = (4, 4, 3);
        let x = vec![f32::NEG_INFINITY; h * w * c];
        // General windows (3 x 3, stride 1) and tiled ones (2 x 2).
        for (pool, strides) in [([3, 3], [1, 1]), ([2, 2], [2, 2])] {
            let p = Pool2D::build("p", PoolKind::Max, &[h, w, c], pool, strides, false).unwrap();
            let (mut y, mut s) = (vec![0.0; p.out_width()], vec![f32::NAN; p.out_width()]);
            if p.tiled() {
                p.tiled_max_sample::<true>(&x, &mut y, &mut s);
                assert!(s.iter().all(|&v| v == 0.0));
            } else {
                p.max_sample::<true>(&x, &mut y, &mut s);
                for (o, v) in s.chunks_exact(c).enumerate() {
                    let (oy, ox) = (o / p.cols.output, o % p.cols.output);
                    let first = (oy * w + ox) * c;
                    assert_eq!(
                        v.iter().map(|v| v.to_bits() as usize).collect::<Vec<_>>(),
                        [first, first + 1, first + 2]
                    );
                }
            }
            assert!(y.iter().all(|&v| v == f32::NEG_INFINITY));
        }
        let g = GlobalPool2D::build("g", PoolKind::Max, &[h, w, c]).unwrap();
        let (mut y, mut s) = (vec![0.0; c], vec![f32::NAN; c]);
        let (mut rng, mut nested) = (crate::rng::Stream::new(0, 0), Vec::new());
        let pass = ForwardPass {
            params: &mut [],
            input: &x,
            output: &mut y,
            saved: &mut s,
            rows: 1,
            training: true,
            keep: true,
            rng: &mut rng,
            nested: &mut nested,
        };
        g.forward(pass);
        assert_eq!(s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [0, 1, 2]);
    }

    /// The general max pooling against the tiled one on the same windows (ties included: the
    /// first in window order wins both), forward values and input gradients bit for bit.
    #[test]
    fn tiled_max_pooling_matches_the_general_windows() {
        // 7 x 6 maps leave an uncovered last row (and, for 3 x 3 pools, no column); 2 x 3 pools.
        for (pool, (h, w)) in [([2, 2], (7, 6)), ([3, 3], (7, 6)), ([2, 3], (4, 9))] {
            let p = Pool2D::build("p", PoolKind::Max, &[h, w, 5], pool, pool, false).unwrap();
            assert!(p.tiled());
            let x: Vec<f32> = (0..h * w * 5).map(|i| ((i * 7) % 4) as f32).collect(); // many ties
            let g: Vec<f32> = (0..p.out_width()).map(|i| 1.0 + i as f32).collect();
            let (mut y1, mut s1, mut y2, mut s2) =
                (vec![0.0; g.len()], vec![0.0; g.len()], vec![0.0; g.len()], vec![0.0; g.len()]);
            p.max_sample::<true>(&x, &mut y1, &mut s1);
            p.tiled_max_sample::<true>(&x, &mut y2, &mut s2);
            assert_eq!(y1, y2);
            let mut d1 = vec![0.0f32; x.len()];
            for (gv, sv) in g.iter().zip(&s1) {
                d1[sv.to_bits() as usize] += gv;
            }
            let mut d2 = vec![f32::NAN; x.len()];
            p.tiled_max_backward(&g, &s2, &mut d2);
            assert_eq!(d1, d2, "pool {pool:?}");
        }
    }
}
