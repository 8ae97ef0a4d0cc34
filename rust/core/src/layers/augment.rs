//! Data augmentation layers, active only in training (note 002 §4.1, note 004): each sample of a
//! batch gets its own random flip, translation, rotation and zoom, as an affine map of pixel
//! coordinates about the image centre, sampled bilinearly with zeros outside the image. Keras
//! fills with reflections by default; zeros keep the map exactly linear (and its backward the
//! exact transpose).
//!
//! For an output pixel `o` (relative to the centre) the source is
//! `F S R(-theta) (o - t)`: translation `t`, rotation `theta`, zoom `S = diag(1 + z)` (positive
//! `z` zooms out, as in Keras), flips `F`. In inference the layer is the identity.

use std::f32::consts::TAU;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::rng::Stream;

use super::spec::{BuildContext, BuildLayer};
use super::{BackwardPass, ForwardPass, LayerKernel, Op};

/// A Keras factor: `f` means the range `[-|f|, |f|]`; a pair is `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Factor {
    Symmetric(f32),
    Range([f32; 2]),
}

impl Factor {
    fn range(self) -> [f32; 2] {
        match self {
            Factor::Symmetric(f) => [-f.abs(), f.abs()],
            Factor::Range(r) => r,
        }
    }

    fn check(self, layer: &str, name: &str) -> Result<()> {
        let [lo, hi] = self.range();
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(invalid(format!("{layer} '{name}': factor range must be finite with lo <= hi; got {self:?}")));
        }
        Ok(())
    }
}

/// `keras.layers.RandomFlip` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomFlipConfig {
    #[serde(default = "both_flips")]
    pub mode: String,
}

fn both_flips() -> String {
    "horizontal_and_vertical".into()
}

/// `keras.layers.RandomTranslation` arguments (fractions of the height and width).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomTranslationConfig {
    pub height_factor: Factor,
    pub width_factor: Factor,
}

/// `keras.layers.RandomRotation` arguments (a fraction of a full turn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomRotationConfig {
    pub factor: Factor,
}

/// `keras.layers.RandomZoom` arguments; no `width_factor` keeps the aspect ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomZoomConfig {
    pub height_factor: Factor,
    #[serde(default)]
    pub width_factor: Option<Factor>,
}

/// Builds the transform layer with `ranges` on an image input.
fn build_transform(ctx: &BuildContext<'_>, inputs: &[Vec<usize>], ranges: Augment) -> Result<(Op, Vec<usize>)> {
    let shape = ctx.one_input(inputs)?;
    let &[height, width, channels] = shape else {
        return Err(invalid(format!(
            "augmentation layer '{}' expects images (height, width, channels); got {shape:?}",
            ctx.name
        )));
    };
    Ok((Op::unary(RandomTransform { ranges, height, width, channels }), shape.to_vec()))
}

impl BuildLayer for RandomFlipConfig {
    fn validate(&self, name: &str) -> Result<()> {
        if !["horizontal", "vertical", "horizontal_and_vertical"].contains(&self.mode.as_str()) {
            return Err(invalid(format!(
                "RandomFlip '{name}': mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical'; got {:?}",
                self.mode
            )));
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let ranges = Augment {
            flip_horizontal: self.mode.contains("horizontal"),
            flip_vertical: self.mode.contains("vertical"),
            ..Augment::default()
        };
        build_transform(ctx, inputs, ranges)
    }
}

impl BuildLayer for RandomTranslationConfig {
    fn validate(&self, name: &str) -> Result<()> {
        self.height_factor.check("RandomTranslation", name)?;
        self.width_factor.check("RandomTranslation", name)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let translate = [self.height_factor.range(), self.width_factor.range()];
        build_transform(ctx, inputs, Augment { translate, ..Augment::default() })
    }
}

impl BuildLayer for RandomRotationConfig {
    fn validate(&self, name: &str) -> Result<()> {
        self.factor.check("RandomRotation", name)
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        build_transform(ctx, inputs, Augment { rotate: self.factor.range(), ..Augment::default() })
    }
}

impl BuildLayer for RandomZoomConfig {
    fn validate(&self, name: &str) -> Result<()> {
        for f in std::iter::once(self.height_factor).chain(self.width_factor) {
            f.check("RandomZoom", name)?;
            if f.range()[0] <= -1.0 {
                return Err(invalid(format!("RandomZoom '{name}': factors must be > -1")));
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let height = self.height_factor.range();
        let ranges = Augment {
            zoom: [height, self.width_factor.map_or(height, Factor::range)],
            zoom_keeps_aspect: self.width_factor.is_none(),
            ..Augment::default()
        };
        build_transform(ctx, inputs, ranges)
    }
}

/// Ranges of the random transforms (all zero / false = no change).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    /// Translation as fractions of height and width: `[lo, hi]` each.
    pub translate: [[f32; 2]; 2],
    /// Rotation as a fraction of a full turn: `[lo, hi]`.
    pub rotate: [f32; 2],
    /// Zoom `[lo, hi]` for height and width; `None` for width keeps the aspect ratio.
    pub zoom: [[f32; 2]; 2],
    pub zoom_keeps_aspect: bool,
}

/// Per-sample affine map `src = A out + b` in pixel coordinates (6 numbers).
const MAP: usize = 6;

#[derive(Clone, Debug)]
pub struct RandomTransform {
    pub ranges: Augment,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

fn draw(rng: &mut Stream, [lo, hi]: [f32; 2]) -> f32 {
    lo + (hi - lo) * rng.uniform()
}

impl RandomTransform {
    fn per_sample(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Draws one sample's map.
    fn sample_map(&self, rng: &mut Stream) -> [f32; MAP] {
        let r = &self.ranges;
        let (h, w) = (self.height as f32, self.width as f32);
        let fy = if r.flip_vertical && rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let fx = if r.flip_horizontal && rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let (ty, tx) = (draw(rng, r.translate[0]) * h, draw(rng, r.translate[1]) * w);
        let theta = draw(rng, r.rotate) * TAU;
        let zy = 1.0 + draw(rng, r.zoom[0]);
        let zx = if r.zoom_keeps_aspect { zy } else { 1.0 + draw(rng, r.zoom[1]) };
        let (c, s) = (theta.cos(), theta.sin());
        // Rows of F S R(-theta): R(-theta) = [[c, s], [-s, c]] acting on (y, x).
        let a = [fy * zy * c, fy * zy * s, -fx * zx * s, fx * zx * c];
        // src - centre = A (out - centre - t)  =>  b = centre - A (centre + t).
        let (cy, cx) = ((h - 1.0) / 2.0, (w - 1.0) / 2.0);
        let (py, px) = (cy + ty, cx + tx);
        [a[0], a[1], a[2], a[3], cy - (a[0] * py + a[1] * px), cx - (a[2] * py + a[3] * px)]
    }

    /// Calls `f(out_pixel, src_pixel, weight)` for the bilinear taps of every output pixel.
    fn taps(&self, m: &[f32], mut f: impl FnMut(usize, usize, f32)) {
        let (h, w) = (self.height as isize, self.width as isize);
        for oy in 0..self.height {
            for ox in 0..self.width {
                let (yf, xf) = (oy as f32, ox as f32);
                let sy = m[0] * yf + m[1] * xf + m[4];
                let sx = m[2] * yf + m[3] * xf + m[5];
                let (y0, x0) = (sy.floor(), sx.floor());
                let (dy, dx) = (sy - y0, sx - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                for (yy, wy) in [(y0, 1.0 - dy), (y0 + 1, dy)] {
                    for (xx, wx) in [(x0, 1.0 - dx), (x0 + 1, dx)] {
                        let wgt = wy * wx;
                        if wgt > 0.0 && (0..h).contains(&yy) && (0..w).contains(&xx) {
                            f(oy * self.width + ox, yy as usize * self.width + xx as usize, wgt);
                        }
                    }
                }
            }
        }
    }
}

impl LayerKernel for RandomTransform {
    fn saved_width(&self) -> usize {
        MAP
    }

    fn forward(&self, p: ForwardPass<'_>) {
        let ForwardPass { input, output, saved, rows, training, rng, .. } = p;
        let (ps, c) = (self.per_sample(), self.channels);
        let n = rows * ps;
        if !training {
            output[..n].copy_from_slice(&input[..n]);
            return;
        }
        // Draw every map first (sequentially, for reproducibility), then transform in parallel.
        for m in saved[..rows * MAP].chunks_exact_mut(MAP) {
            m.copy_from_slice(&self.sample_map(rng));
        }
        output[..n]
            .par_chunks_mut(ps)
            .zip(input[..n].par_chunks(ps).zip(saved[..rows * MAP].par_chunks(MAP)))
            .for_each(|(y, (x, m))| {
                y.fill(0.0);
                self.taps(m, |o, s, wgt| {
                    for ch in 0..c {
                        y[o * c + ch] += wgt * x[s * c + ch];
                    }
                });
            });
    }

    fn backward(&self, p: BackwardPass<'_>) {
        let Some(dx) = p.grad_in else { return };
        let (ps, c) = (self.per_sample(), self.channels);
        dx[..p.rows * ps]
            .par_chunks_mut(ps)
            .zip(p.grad_out[..p.rows * ps].par_chunks(ps).zip(p.saved[..p.rows * MAP].par_chunks(MAP)))
            .for_each(|(d, (g, m))| {
                d.fill(0.0);
                self.taps(m, |o, s, wgt| {
                    for ch in 0..c {
                        d[s * c + ch] += wgt * g[o * c + ch];
                    }
                });
            });
    }
}
