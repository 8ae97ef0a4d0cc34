//! Pooling, channels last (note 002 §6: pooling summarises a neighbourhood, shrinking the map).
//!
//! - max pooling: the largest value of each window; backward routes the gradient to the position
//!   that won (its index is kept from forward)
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
    /// and remembers the flat input index that won.
    fn max_sample(&self, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        let c = self.channels;
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let o = (oy * self.cols.output + ox) * c;
                let (yc, sc) = (&mut y[o..o + c], &mut s[o..o + c]);
                yc.fill(f32::NEG_INFINITY);
                self.window(oy, ox, |cell| {
                    let xc = &x[cell * c..cell * c + c];
                    // Selects rather than branches, so the channel loop vectorises.
                    for ch in 0..c {
                        let better = xc[ch] > yc[ch];
                        yc[ch] = if better { xc[ch] } else { yc[ch] };
                        let idx = f32::from_bits((cell * c + ch) as u32);
                        sc[ch] = if better { idx } else { sc[ch] };
                    }
                });
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
        let ForwardPass { input, output, saved, rows, .. } = p;
        let (iw, ow) = (self.in_width(), self.out_width());
        let (x, y) = (&input[..rows * iw], &mut output[..rows * ow]);
        match self.kind {
            PoolKind::Max => x
                .par_chunks(iw)
                .zip(y.par_chunks_mut(ow).zip(saved[..rows * ow].par_chunks_mut(ow)))
                .for_each(|(x, (y, s))| self.max_sample(x, y, s)),
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
                dx.par_chunks_mut(iw).zip(g.par_chunks(ow).zip(s.par_chunks(ow))).for_each(|(d, (g, s))| {
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
        let ForwardPass { input, output, saved, rows, .. } = p;
        let (c, iw) = (self.channels, self.cells * self.channels);
        for r in 0..rows {
            let x = &input[r * iw..(r + 1) * iw];
            let y = &mut output[r * c..(r + 1) * c];
            match self.kind {
                PoolKind::Average => {
                    y.fill(0.0);
                    x.chunks_exact(c).for_each(|cell| y.iter_mut().zip(cell).for_each(|(a, v)| *a += v));
                    let inv = 1.0 / self.cells as f32;
                    y.iter_mut().for_each(|v| *v *= inv);
                }
                PoolKind::Max => {
                    let s = &mut saved[r * c..(r + 1) * c];
                    y.fill(f32::NEG_INFINITY);
                    for (i, cell) in x.chunks_exact(c).enumerate() {
                        for ch in 0..c {
                            if cell[ch] > y[ch] {
                                y[ch] = cell[ch];
                                s[ch] = f32::from_bits((i * c + ch) as u32);
                            }
                        }
                    }
                }
            }
        }
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let (c, iw) = (self.channels, self.cells * self.channels);
        for r in 0..p.rows {
            let g = &p.grad_out[r * c..(r + 1) * c];
            let d = &mut dx[r * iw..(r + 1) * iw];
            match self.kind {
                PoolKind::Average => {
                    let inv = 1.0 / self.cells as f32;
                    d.chunks_exact_mut(c).for_each(|cell| cell.iter_mut().zip(g).for_each(|(a, g)| *a = g * inv));
                }
                PoolKind::Max => {
                    d.fill(0.0);
                    for ch in 0..c {
                        d[p.saved[r * c + ch].to_bits() as usize] += g[ch];
                    }
                }
            }
        }
    }
}
