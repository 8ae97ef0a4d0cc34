//! Merge layers (Keras 3 `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`,
//! `Concatenate`, `Dot`): several inputs combined into one output. Shapes below are per sample;
//! the batch axis is never merged or broadcast.
//!
//! Elementwise merges broadcast as Keras does (`Merge._compute_elemwise_op_output_shape` plus the
//! `expand_dims(x, 1)` of `Merge.call`): shapes are aligned on the right, the shorter padded with
//! leading 1s, and a size-1 dim takes the other's size. With `x_k` read at the broadcast position
//! of each output value and `g = dL/dy`:
//! - Add: `y = sum_k x_k`, `dx_k = g`.
//! - Subtract (exactly 2): `y = x_0 - x_1`, `dx_0 = g`, `dx_1 = -g`.
//! - Multiply: `y = prod_k x_k`, `dx_k = g prod_{i != k} x_i` (no division, so zeros are fine).
//! - Average: `y = (sum_k x_k) / n`, `dx_k = g / n`.
//! - Maximum / Minimum: `y = max_k x_k` (`min_k`), `dx_k = g` where input `k` holds the extreme,
//!   else 0. On ties the earliest input wins (a strict comparison keeps the first), so exactly one
//!   input gets each `g`, as a subgradient must.
//!
//! A broadcast input's gradient is the sum of the above over the output positions it was read at.
//!
//! Concatenate: `y = [x_0, x_1, ...]` along `axis`; `dx_k` is the slice of `g` that `x_k` filled.
//!
//! Dot (exactly 2 inputs of rank 1 or 2 per sample): with `i` / `j` the free index of `x` / `y`
//! (absent for rank 1) and `c` the contracted one, `out[i, j] = sum_c u[i, c] v[j, c]`, laid out as
//! Keras' `batch_dot` (x's free dim first; rank 1 x rank 1 gives shape `(1,)`). Without `normalize`
//! `u = x`, `v = y` and `dx[i, c] = sum_j g[i, j] y[j, c]` (and symmetrically for `y`). With it,
//! as Keras 3 `ops.normalize` (order 2): `u_i = s_i x_i`, `s_i = min(1 / sqrt(sum_c x[i, c]^2), 1e7)`
//! (1e7 = 1 / `backend.epsilon()`), and by the chain rule through the normalization
//! `dx_i = s_i (h_i - u_i (u_i . h_i))` with `h_i = sum_j g[i, j] v_j` and `u_i . h_i =
//! sum_j g[i, j] out[i, j]`; where the clamp is active, `u_i = 1e7 x_i` and `dx_i = 1e7 h_i`.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

use super::spec::{defaults, BuildContext, BuildLayer};
use super::Op;

fn build_merge(ctx: &BuildContext<'_>, kind: MergeKind, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
    let (m, out) = Merge::build(ctx.name, kind, inputs)?;
    Ok((Op::Merge(m), out))
}

/// The configurations of the elementwise merges, which take no arguments.
macro_rules! elementwise_configs {
    ($($(#[$meta:meta])* $config:ident => $kind:ident),* $(,)?) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
            pub struct $config {}

            impl BuildLayer for $config {
                fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
                    build_merge(ctx, MergeKind::$kind, inputs)
                }
            }
        )*
    };
}

elementwise_configs! {
    /// `keras.layers.Add`.
    AddConfig => Add,
    /// `keras.layers.Subtract`.
    SubtractConfig => Subtract,
    /// `keras.layers.Multiply`.
    MultiplyConfig => Multiply,
    /// `keras.layers.Average`.
    AverageConfig => Average,
    /// `keras.layers.Maximum`.
    MaximumConfig => Maximum,
    /// `keras.layers.Minimum`.
    MinimumConfig => Minimum,
}

/// `keras.layers.Concatenate` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConcatenateConfig {
    #[serde(default = "defaults::last_axis")]
    pub axis: i64,
}

impl BuildLayer for ConcatenateConfig {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        build_merge(ctx, MergeKind::Concatenate { axis: self.axis }, inputs)
    }
}

/// `Dot`'s `axes`: one axis for both inputs, or one each.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DotAxes {
    Both(i64),
    Each([i64; 2]),
}

/// `keras.layers.Dot` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DotConfig {
    pub axes: DotAxes,
    #[serde(default)]
    pub normalize: bool,
}

impl BuildLayer for DotConfig {
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)> {
        let axes = match self.axes {
            DotAxes::Both(a) => [a, a],
            DotAxes::Each(pair) => pair,
        };
        build_merge(ctx, MergeKind::Dot { axes, normalize: self.normalize }, inputs)
    }
}

/// Keras 3's `backend.epsilon()`: `ops.normalize` caps the inverse norm at its reciprocal.
const NORM_EPSILON: f32 = 1e-7;

/// Which merge (Keras 3 layer names).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum MergeKind {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
    /// `axis` as Keras counts it: over the full tensor including the batch axis; negative from the
    /// end; 0 (the batch axis) is an error.
    Concatenate {
        axis: i64,
    },
    /// Keras `Dot(axes, normalize)`: batched dot product along `axes` (full-tensor axis numbers as
    /// Keras: 1.. or negative), optional L2 normalization along those axes first (cosine
    /// similarity).
    Dot {
        axes: [i64; 2],
        normalize: bool,
    },
}

impl MergeKind {
    fn layer_name(self) -> &'static str {
        match self {
            MergeKind::Add => "Add",
            MergeKind::Subtract => "Subtract",
            MergeKind::Multiply => "Multiply",
            MergeKind::Average => "Average",
            MergeKind::Maximum => "Maximum",
            MergeKind::Minimum => "Minimum",
            MergeKind::Concatenate { .. } => "Concatenate",
            MergeKind::Dot { .. } => "Dot",
        }
    }
}

/// One operand of a Dot seen as a `free x n` matrix: value `(f, c)` at `f * sf + c * sc`.
#[derive(Clone, Copy, Debug)]
struct DotSide {
    free: usize,
    n: usize,
    sf: usize,
    sc: usize,
    width: usize,
}

impl DotSide {
    #[inline]
    fn at(&self, f: usize, c: usize) -> usize {
        f * self.sf + c * self.sc
    }

    /// `s_f` of the module doc and whether the `1e7` cap is active.
    #[inline]
    fn inv_norm(&self, x: &[f32], f: usize) -> (f32, bool) {
        let mut sq = 0.0f32;
        for c in 0..self.n {
            let v = x[self.at(f, c)];
            sq += v * v;
        }
        let inv = 1.0 / sq.sqrt();
        if inv < 1.0 / NORM_EPSILON {
            (inv, false)
        } else {
            (1.0 / NORM_EPSILON, true)
        }
    }
}

#[derive(Clone, Debug)]
enum Geometry {
    /// `maps[k][j]`: offset in input k's sample of output value `j`; `None` when input k has the
    /// output's layout (no broadcast). `same`: every map is `None` (the fast path).
    Elementwise {
        maps: Vec<Option<Vec<u32>>>,
        same: bool,
    },
    /// A sample is `outer` blocks; in block `b` input k fills `chunks[k]` values at `offsets[k]`.
    Concat {
        chunks: Vec<usize>,
        offsets: Vec<usize>,
        out_chunk: usize,
        outer: usize,
    },
    Dot {
        sides: [DotSide; 2],
        normalize: bool,
    },
}

/// A built merge layer for fixed per-sample input shapes.
#[derive(Clone, Debug)]
pub struct Merge {
    kind: MergeKind,
    in_widths: Vec<usize>,
    out_width: usize,
    geo: Geometry,
}

/// A shape as Python prints a tuple: `(2, 3)`, `(3,)`, `()`.
fn py_shape(s: &[usize]) -> String {
    match s.len() {
        0 => "()".to_string(),
        1 => format!("({},)", s[0]),
        _ => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// A per-sample shape as Keras prints the full one: `(None, 2, 3)`.
fn py_full_shape(s: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(s.iter().map(|d| d.to_string()));
    if parts.len() == 1 {
        "(None,)".to_string()
    } else {
        format!("({})", parts.join(", "))
    }
}

/// All input shapes as Keras prints `input_shape`: `[(None, 3), (None, 4)]`.
fn py_shape_list(shapes: &[Vec<usize>]) -> String {
    format!("[{}]", shapes.iter().map(|s| py_full_shape(s)).collect::<Vec<_>>().join(", "))
}

fn width(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Keras' `_compute_elemwise_op_output_shape`: right-aligned, size-1 dims broadcast.
fn elemwise_shape(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let (a, b) = if a.len() < b.len() { (b, a) } else { (a, b) };
    let mut out = a[..a.len() - b.len()].to_vec();
    for (&i, &j) in a[a.len() - b.len()..].iter().zip(b) {
        if i == 1 {
            out.push(j);
        } else if j == 1 || i == j {
            out.push(i);
        } else {
            return Err(format!(
                "Inputs have incompatible shapes. Received shapes {} and {}",
                py_shape(a),
                py_shape(b)
            ));
        }
    }
    Ok(out)
}

/// Offsets into a sample of `shape` for each value of a sample of `out` (right-aligned
/// broadcast), or `None` when they are the identity.
fn broadcast_map(shape: &[usize], out: &[usize]) -> Option<Vec<u32>> {
    let map = super::broadcast::offsets(shape, out);
    let identity = width(shape) == map.len() && map.iter().enumerate().all(|(j, &m)| m as usize == j);
    (!identity).then_some(map)
}

impl Merge {
    /// `input_shapes` are per-sample shapes (without the batch axis). Returns the layer and its
    /// per-sample output shape.
    pub fn build(name: &str, kind: MergeKind, input_shapes: &[Vec<usize>]) -> Result<(Merge, Vec<usize>)> {
        let lname = kind.layer_name();
        let err = |msg: String| invalid(format!("{lname} layer '{name}': {msg}"));
        if input_shapes.is_empty() {
            return Err(err(format!(
                "A merge layer should be called on a list of at least 1 input. Received 0 inputs. \
                 Full input_shape received: {}",
                py_shape_list(input_shapes)
            )));
        }
        let in_widths: Vec<usize> = input_shapes.iter().map(|s| width(s)).collect();
        if in_widths.iter().any(|&w| w > u32::MAX as usize) {
            return Err(err(format!("inputs of more than {} values per sample are not supported", u32::MAX)));
        }
        let (geo, out_shape) = match kind {
            MergeKind::Concatenate { axis } => Self::build_concat(axis, input_shapes).map_err(err)?,
            MergeKind::Dot { axes, normalize } => Self::build_dot(axes, normalize, input_shapes).map_err(err)?,
            _ => {
                if kind == MergeKind::Subtract && input_shapes.len() != 2 {
                    return Err(err(format!(
                        "A `Subtract` layer should be called on exactly 2 inputs. Received: input_shape={}",
                        py_shape_list(input_shapes)
                    )));
                }
                let mut out = input_shapes[0].clone();
                for s in &input_shapes[1..] {
                    out = elemwise_shape(&out, s).map_err(err)?;
                }
                let maps: Vec<Option<Vec<u32>>> = input_shapes.iter().map(|s| broadcast_map(s, &out)).collect();
                let same = maps.iter().all(Option::is_none);
                (Geometry::Elementwise { maps, same }, out)
            }
        };
        let merge = Merge { kind, in_widths, out_width: width(&out_shape), geo };
        Ok((merge, out_shape))
    }

    fn build_concat(axis: i64, shapes: &[Vec<usize>]) -> std::result::Result<(Geometry, Vec<usize>), String> {
        let mismatch = || {
            format!(
                "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. \
                 Received: input_shape={}",
                py_shape_list(shapes)
            )
        };
        let rank = shapes[0].len();
        if shapes.iter().any(|s| s.len() != rank) {
            return Err(mismatch());
        }
        let full_rank = rank as i64 + 1;
        let ax = if axis < 0 { axis + full_rank } else { axis };
        if ax == 0 {
            return Err(format!(
                "cannot concatenate along axis {axis}, the batch axis; received input_shape={}",
                py_shape_list(shapes)
            ));
        }
        if ax < 0 || ax >= full_rank {
            return Err(format!(
                "axis {axis} is out of range for inputs of rank {full_rank} (batch axis included); \
                 received input_shape={}",
                py_shape_list(shapes)
            ));
        }
        let a = ax as usize - 1;
        for s in &shapes[1..] {
            if (0..rank).any(|d| d != a && s[d] != shapes[0][d]) {
                return Err(mismatch());
            }
        }
        let outer = width(&shapes[0][..a]);
        let inner = width(&shapes[0][a + 1..]);
        let chunks: Vec<usize> = shapes.iter().map(|s| s[a] * inner).collect();
        let offsets: Vec<usize> = chunks.iter().scan(0, |acc, &c| Some(std::mem::replace(acc, *acc + c))).collect();
        let out_chunk = chunks.iter().sum();
        let mut out = shapes[0].clone();
        out[a] = shapes.iter().map(|s| s[a]).sum();
        Ok((Geometry::Concat { chunks, offsets, out_chunk, outer }, out))
    }

    fn build_dot(
        axes: [i64; 2],
        normalize: bool,
        shapes: &[Vec<usize>],
    ) -> std::result::Result<(Geometry, Vec<usize>), String> {
        if shapes.len() != 2 {
            return Err(format!(
                "A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={}",
                py_shape_list(shapes)
            ));
        }
        let (s0, s1) = (&shapes[0], &shapes[1]);
        if !(1..=2).contains(&s0.len()) || !(1..=2).contains(&s1.len()) {
            return Err(format!(
                "Dot supports inputs of rank 2 or 3 (batch axis included). Received inputs with shapes {} and {}.",
                py_full_shape(s0),
                py_full_shape(s1)
            ));
        }
        let mut sides = [DotSide { free: 0, n: 0, sf: 0, sc: 0, width: 0 }; 2];
        let mut out = Vec::new();
        for (k, s) in shapes.iter().enumerate() {
            let full_rank = s.len() as i64 + 1;
            let ax = if axes[k] < 0 { axes[k] + full_rank } else { axes[k] };
            if ax == 0 {
                return Err(format!(
                    "Cannot perform batch_dot over axis 0. Received axes={axes:?} for inputs with shapes {} and {}.",
                    py_full_shape(s0),
                    py_full_shape(s1)
                ));
            }
            if ax < 0 || ax >= full_rank {
                return Err(format!(
                    "axes={axes:?}: axis {} is out of range for input {k} of shape {} (inputs with shapes {} and {}).",
                    axes[k],
                    py_full_shape(s),
                    py_full_shape(s0),
                    py_full_shape(s1)
                ));
            }
            let p = ax as usize - 1;
            sides[k] = match (s.len(), p) {
                (1, _) => DotSide { free: 1, n: s[0], sf: 0, sc: 1, width: s[0] },
                (_, 0) => DotSide { free: s[1], n: s[0], sf: 1, sc: s[1], width: s[0] * s[1] },
                _ => DotSide { free: s[0], n: s[1], sf: s[1], sc: 1, width: s[0] * s[1] },
            };
            if s.len() == 2 {
                out.push(sides[k].free);
            }
        }
        if sides[0].n != sides[1].n {
            return Err(format!(
                "Incompatible input shapes: axis values {} (at axis {}) != {} (at axis {}). \
                 Full input shapes: {}, {}",
                sides[0].n,
                axes[0],
                sides[1].n,
                axes[1],
                py_full_shape(s0),
                py_full_shape(s1)
            ));
        }
        if out.is_empty() {
            out.push(1);
        }
        Ok((Geometry::Dot { sides, normalize }, out))
    }

    /// Values per sample of the output.
    pub fn output_width(&self) -> usize {
        self.out_width
    }

    /// Values per sample of input `k`.
    pub fn input_width(&self, k: usize) -> usize {
        self.in_widths[k]
    }

    /// The merge this layer computes.
    pub fn kind(&self) -> MergeKind {
        self.kind
    }

    /// `inputs[k]` holds at least `rows * width(input k)` values (use the prefix); writes
    /// `rows * output_width()` values of `output`.
    pub fn forward(&self, inputs: &[&[f32]], output: &mut [f32], rows: usize) {
        debug_assert_eq!(inputs.len(), self.in_widths.len());
        let ow = self.out_width;
        let output = &mut output[..rows * ow];
        match &self.geo {
            Geometry::Elementwise { maps, same } => {
                let n = inputs.len();
                if *same {
                    // Every input has the output's layout: whole-buffer slice loops.
                    output.copy_from_slice(&inputs[0][..rows * ow]);
                    for x in &inputs[1..] {
                        let pairs = output.iter_mut().zip(&x[..rows * ow]);
                        match self.kind {
                            MergeKind::Subtract => pairs.for_each(|(o, &v)| *o -= v),
                            MergeKind::Multiply => pairs.for_each(|(o, &v)| *o *= v),
                            MergeKind::Maximum => pairs.for_each(|(o, &v)| *o = if v > *o { v } else { *o }),
                            MergeKind::Minimum => pairs.for_each(|(o, &v)| *o = if v < *o { v } else { *o }),
                            _ => pairs.for_each(|(o, &v)| *o += v),
                        }
                    }
                } else {
                    for r in 0..rows {
                        let orow = &mut output[r * ow..(r + 1) * ow];
                        for (j, o) in orow.iter_mut().enumerate() {
                            let at = |k: usize| {
                                let w = self.in_widths[k];
                                inputs[k][r * w + maps[k].as_ref().map_or(j, |m| m[j] as usize)]
                            };
                            let mut acc = at(0);
                            for k in 1..n {
                                let v = at(k);
                                acc = match self.kind {
                                    MergeKind::Subtract => acc - v,
                                    MergeKind::Multiply => acc * v,
                                    MergeKind::Maximum => {
                                        if v > acc {
                                            v
                                        } else {
                                            acc
                                        }
                                    }
                                    MergeKind::Minimum => {
                                        if v < acc {
                                            v
                                        } else {
                                            acc
                                        }
                                    }
                                    _ => acc + v,
                                };
                            }
                            *o = acc;
                        }
                    }
                }
                if self.kind == MergeKind::Average {
                    let nf = n as f32;
                    output.iter_mut().for_each(|o| *o /= nf);
                }
            }
            Geometry::Concat { chunks, offsets, out_chunk, outer } => {
                for b in 0..rows * outer {
                    let orow = &mut output[b * out_chunk..(b + 1) * out_chunk];
                    for (k, x) in inputs.iter().enumerate() {
                        let c = chunks[k];
                        orow[offsets[k]..offsets[k] + c].copy_from_slice(&x[b * c..(b + 1) * c]);
                    }
                }
            }
            Geometry::Dot { sides: [a, b], normalize } => {
                for r in 0..rows {
                    let x = &inputs[0][r * a.width..(r + 1) * a.width];
                    let y = &inputs[1][r * b.width..(r + 1) * b.width];
                    let orow = &mut output[r * ow..(r + 1) * ow];
                    for i in 0..a.free {
                        let si = if *normalize { a.inv_norm(x, i).0 } else { 1.0 };
                        for j in 0..b.free {
                            let mut acc = 0.0f32;
                            for c in 0..a.n {
                                acc += x[a.at(i, c)] * y[b.at(j, c)];
                            }
                            if *normalize {
                                acc *= si * b.inv_norm(y, j).0;
                            }
                            orow[i * b.free + j] = acc;
                        }
                    }
                }
            }
        }
    }

    /// Writes (overwrites, never accumulates) dL/d(input k) into the first `rows * width(input k)`
    /// values of `grad_in`, given the forward inputs, the forward output and dL/d(output)
    /// `grad_out`. The graph sums gradients where a tensor feeds several places.
    pub fn backward_input(
        &self,
        k: usize,
        inputs: &[&[f32]],
        output: &[f32],
        grad_out: &[f32],
        grad_in: &mut [f32],
        rows: usize,
    ) {
        debug_assert!(k < self.in_widths.len());
        let ow = self.out_width;
        let wk = self.in_widths[k];
        let grad_in = &mut grad_in[..rows * wk];
        let grad_out = &grad_out[..rows * ow];
        match &self.geo {
            Geometry::Elementwise { maps, same } => {
                let n = inputs.len();
                let sign = if self.kind == MergeKind::Subtract && k == 1 { -1.0 } else { 1.0 };
                let scale = if self.kind == MergeKind::Average { sign / n as f32 } else { sign };
                if *same {
                    match self.kind {
                        MergeKind::Multiply => {
                            grad_in.copy_from_slice(grad_out);
                            for (i, x) in inputs.iter().enumerate() {
                                if i != k {
                                    grad_in.iter_mut().zip(&x[..rows * ow]).for_each(|(d, &v)| *d *= v);
                                }
                            }
                        }
                        MergeKind::Maximum | MergeKind::Minimum => {
                            let max = self.kind == MergeKind::Maximum;
                            for (j, d) in grad_in.iter_mut().enumerate() {
                                let mut best = 0;
                                for i in 1..n {
                                    let (v, b) = (inputs[i][j], inputs[best][j]);
                                    if (max && v > b) || (!max && v < b) {
                                        best = i;
                                    }
                                }
                                *d = if best == k { grad_out[j] } else { 0.0 };
                            }
                        }
                        _ => grad_in.iter_mut().zip(grad_out).for_each(|(d, &g)| *d = scale * g),
                    }
                    return;
                }
                let mk = maps[k].as_deref();
                if mk.is_some() {
                    grad_in.fill(0.0);
                }
                for r in 0..rows {
                    let grow = &grad_out[r * ow..(r + 1) * ow];
                    let drow = &mut grad_in[r * wk..(r + 1) * wk];
                    for (j, &g) in grow.iter().enumerate() {
                        let at = |i: usize| {
                            let w = self.in_widths[i];
                            inputs[i][r * w + maps[i].as_ref().map_or(j, |m| m[j] as usize)]
                        };
                        let d = match self.kind {
                            MergeKind::Multiply => {
                                let mut p = g;
                                for i in (0..n).filter(|&i| i != k) {
                                    p *= at(i);
                                }
                                p
                            }
                            MergeKind::Maximum | MergeKind::Minimum => {
                                let max = self.kind == MergeKind::Maximum;
                                let (mut best, mut bv) = (0, at(0));
                                for i in 1..n {
                                    let v = at(i);
                                    if (max && v > bv) || (!max && v < bv) {
                                        (best, bv) = (i, v);
                                    }
                                }
                                if best == k {
                                    g
                                } else {
                                    0.0
                                }
                            }
                            _ => scale * g,
                        };
                        match mk {
                            Some(m) => drow[m[j] as usize] += d,
                            None => drow[j] = d,
                        }
                    }
                }
            }
            Geometry::Concat { chunks, offsets, out_chunk, outer } => {
                let (c, off) = (chunks[k], offsets[k]);
                for b in 0..rows * outer {
                    grad_in[b * c..(b + 1) * c].copy_from_slice(&grad_out[b * out_chunk + off..][..c]);
                }
            }
            Geometry::Dot { sides, normalize } => {
                let (own, other) = (&sides[k], &sides[1 - k]);
                // Output strides of the own / other free index (x's index is the major one).
                let (os_own, os_other) = if k == 0 { (other.free, 1) } else { (1, own.free) };
                for r in 0..rows {
                    let xo = &inputs[k][r * own.width..(r + 1) * own.width];
                    let xt = &inputs[1 - k][r * other.width..(r + 1) * other.width];
                    let g = &grad_out[r * ow..(r + 1) * ow];
                    let out = &output[r * ow..(r + 1) * ow];
                    let d = &mut grad_in[r * own.width..(r + 1) * own.width];
                    for i in 0..own.free {
                        // h_i = sum_j g[i, j] v_j, written into d's row i.
                        for c in 0..own.n {
                            d[own.at(i, c)] = 0.0;
                        }
                        for j in 0..other.free {
                            let mut w = g[i * os_own + j * os_other];
                            if *normalize {
                                w *= other.inv_norm(xt, j).0;
                            }
                            for c in 0..own.n {
                                d[own.at(i, c)] += w * xt[other.at(j, c)];
                            }
                        }
                        if *normalize {
                            let (s, clamped) = own.inv_norm(xo, i);
                            if clamped {
                                for c in 0..own.n {
                                    d[own.at(i, c)] *= s;
                                }
                            } else {
                                let mut uh = 0.0f32;
                                for j in 0..other.free {
                                    let o = i * os_own + j * os_other;
                                    uh += g[o] * out[o];
                                }
                                for c in 0..own.n {
                                    let p = own.at(i, c);
                                    d[p] = s * (d[p] - xo[p] * s * uh);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: usize = 3;

    /// A small deterministic generator (64-bit LCG, top bits).
    struct Lcg(u64);

    impl Lcg {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        /// Uniform in [-1, 1).
        fn uniform(&mut self) -> f32 {
            (self.next_u32() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.uniform()).collect()
        }
        /// Magnitude in [0.5, 1], random sign: norms stay well away from 0 (normalize tests).
        fn vec_away_from_zero(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let m = 0.75 + 0.25 * self.uniform();
                    if self.next_u32().is_multiple_of(2) {
                        m
                    } else {
                        -m
                    }
                })
                .collect()
        }
    }

    fn widths(shapes: &[Vec<usize>]) -> Vec<usize> {
        shapes.iter().map(|s| s.iter().product()).collect()
    }

    fn random_inputs(shapes: &[Vec<usize>], seed: u64) -> Vec<Vec<f32>> {
        let mut g = Lcg(seed);
        widths(shapes).iter().map(|&w| g.vec(ROWS * w)).collect()
    }

    /// Values of input k drawn from `0.1 * (m * n + k) - 1`: values of different inputs differ by
    /// at least 0.1, far more than the finite-difference step, and never tie.
    fn separated_inputs(shapes: &[Vec<usize>], seed: u64) -> Vec<Vec<f32>> {
        let mut g = Lcg(seed);
        let n = shapes.len() as u32;
        widths(shapes)
            .iter()
            .enumerate()
            .map(|(k, &w)| (0..ROWS * w).map(|_| 0.1 * ((g.next_u32() % 20) * n + k as u32) as f32 - 1.0).collect())
            .collect()
    }

    /// Runs forward on buffers longer than needed (NaN tails must not be read; the output tail
    /// must not be written).
    fn run_forward(m: &Merge, inputs: &[Vec<f32>]) -> Vec<f32> {
        let padded: Vec<Vec<f32>> = inputs
            .iter()
            .map(|x| {
                let mut p = x.clone();
                p.extend([f32::NAN; 4]);
                p
            })
            .collect();
        let refs: Vec<&[f32]> = padded.iter().map(|x| x.as_slice()).collect();
        let n = ROWS * m.output_width();
        let mut out = vec![-7.0f32; n + 4];
        m.forward(&refs, &mut out, ROWS);
        assert!(out[n..].iter().all(|&v| v == -7.0), "forward wrote past rows * output_width");
        out.truncate(n);
        out
    }

    fn loss(m: &Merge, inputs: &[Vec<f32>], r: &[f32]) -> f64 {
        run_forward(m, inputs).iter().zip(r).map(|(&o, &w)| o as f64 * w as f64).sum()
    }

    /// L = sum(output * R); backward_input(k, grad_out = R) against central differences.
    fn grad_check(kind: MergeKind, shapes: &[Vec<usize>], mut inputs: Vec<Vec<f32>>) {
        let (m, out_shape) = Merge::build("t", kind, shapes).unwrap();
        assert_eq!(m.output_width(), out_shape.iter().product::<usize>());
        let r = Lcg(99).vec(ROWS * m.output_width());
        let out = run_forward(&m, &inputs);
        let refs: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
        let mut analytic = Vec::new();
        for k in 0..shapes.len() {
            let n = ROWS * m.input_width(k);
            // Garbage in the buffer: backward must overwrite the prefix and leave the tail.
            let mut g = vec![123.0f32; n + 4];
            m.backward_input(k, &refs, &out, &r, &mut g, ROWS);
            assert!(g[n..].iter().all(|&v| v == 123.0), "backward wrote past rows * width");
            g.truncate(n);
            analytic.push(g);
        }
        let h = 1e-2f32;
        for k in 0..shapes.len() {
            for idx in 0..inputs[k].len() {
                let x0 = inputs[k][idx];
                let (xp, xm) = (x0 + h, x0 - h);
                inputs[k][idx] = xp;
                let lp = loss(&m, &inputs, &r);
                inputs[k][idx] = xm;
                let lm = loss(&m, &inputs, &r);
                inputs[k][idx] = x0;
                let numeric = (lp - lm) / (xp as f64 - xm as f64);
                let a = analytic[k][idx] as f64;
                assert!(
                    (numeric - a).abs() <= 1e-3 + 2e-2 * numeric.abs(),
                    "{kind:?} {shapes:?}: input {k} value {idx}: analytic {a} vs numeric {numeric}"
                );
            }
        }
    }

    fn check(kind: MergeKind, shapes: &[Vec<usize>]) {
        let inputs = match kind {
            MergeKind::Maximum | MergeKind::Minimum => separated_inputs(shapes, 7),
            MergeKind::Dot { normalize: true, .. } => {
                let mut g = Lcg(11);
                widths(shapes).iter().map(|&w| g.vec_away_from_zero(ROWS * w)).collect()
            }
            _ => random_inputs(shapes, 7),
        };
        grad_check(kind, shapes, inputs);
    }

    fn shapes(s: &[&[usize]]) -> Vec<Vec<usize>> {
        s.iter().map(|x| x.to_vec()).collect()
    }

    fn out_shape(kind: MergeKind, s: &[&[usize]]) -> Vec<usize> {
        Merge::build("t", kind, &shapes(s)).unwrap().1
    }

    fn build_err(kind: MergeKind, s: &[&[usize]]) -> String {
        match Merge::build("my_layer", kind, &shapes(s)) {
            Ok(_) => panic!("{kind:?} {s:?} should fail"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("'my_layer'"), "{msg}");
                msg
            }
        }
    }

    const ELEMWISE: [MergeKind; 6] = [
        MergeKind::Add,
        MergeKind::Subtract,
        MergeKind::Multiply,
        MergeKind::Average,
        MergeKind::Maximum,
        MergeKind::Minimum,
    ];

    #[test]
    fn elementwise_grad_same_shapes() {
        for kind in ELEMWISE {
            check(kind, &shapes(&[&[2, 3], &[2, 3]]));
            if kind != MergeKind::Subtract {
                check(kind, &shapes(&[&[4], &[4], &[4]]));
                check(kind, &shapes(&[&[5]]));
            }
        }
    }

    #[test]
    fn elementwise_grad_broadcast() {
        for kind in ELEMWISE {
            check(kind, &shapes(&[&[2, 3], &[1, 3]]));
            check(kind, &shapes(&[&[2, 1, 4], &[3, 1]]));
            check(kind, &shapes(&[&[3], &[2, 3]]));
            check(kind, &shapes(&[&[2, 3], &[]]));
            if kind != MergeKind::Subtract {
                check(kind, &shapes(&[&[2, 3], &[2, 1], &[3], &[2, 3]]));
                check(kind, &shapes(&[&[1, 3], &[2, 1]]));
            }
        }
    }

    #[test]
    fn elementwise_output_shapes_follow_keras() {
        assert_eq!(out_shape(MergeKind::Add, &[&[2, 3], &[1, 3]]), vec![2, 3]);
        assert_eq!(out_shape(MergeKind::Add, &[&[2, 3], &[3]]), vec![2, 3]);
        assert_eq!(out_shape(MergeKind::Add, &[&[3], &[2, 3]]), vec![2, 3]);
        assert_eq!(out_shape(MergeKind::Multiply, &[&[2, 1, 4], &[3, 1]]), vec![2, 3, 4]);
        assert_eq!(out_shape(MergeKind::Maximum, &[&[3]]), vec![3]);
        assert_eq!(out_shape(MergeKind::Add, &[&[2, 3], &[]]), vec![2, 3]);
    }

    #[test]
    fn elementwise_forward_matches_formula() {
        let s = shapes(&[&[2, 3], &[3], &[2, 1]]);
        let x = random_inputs(&s, 3);
        let n = 3.0f32;
        for kind in [MergeKind::Add, MergeKind::Multiply, MergeKind::Average, MergeKind::Maximum, MergeKind::Minimum] {
            let (m, _) = Merge::build("t", kind, &s).unwrap();
            let out = run_forward(&m, &x);
            for r in 0..ROWS {
                for i in 0..2 {
                    for j in 0..3 {
                        let (a, b, c) = (x[0][r * 6 + i * 3 + j], x[1][r * 3 + j], x[2][r * 2 + i]);
                        let want = match kind {
                            MergeKind::Add => a + b + c,
                            MergeKind::Multiply => a * b * c,
                            MergeKind::Average => (a + b + c) / n,
                            MergeKind::Maximum => a.max(b).max(c),
                            _ => a.min(b).min(c),
                        };
                        let got = out[r * 6 + i * 3 + j];
                        assert!((got - want).abs() < 1e-6, "{kind:?}: {got} vs {want}");
                    }
                }
            }
        }
        let s = shapes(&[&[4], &[4]]);
        let x = random_inputs(&s, 5);
        let (m, _) = Merge::build("t", MergeKind::Subtract, &s).unwrap();
        let out = run_forward(&m, &x);
        for i in 0..ROWS * 4 {
            assert_eq!(out[i], x[0][i] - x[1][i]);
        }
    }

    #[test]
    fn extreme_ties_go_to_the_earliest_input() {
        for kind in [MergeKind::Maximum, MergeKind::Minimum] {
            for s in [shapes(&[&[4], &[4]]), shapes(&[&[4], &[1]])] {
                let (m, _) = Merge::build("t", kind, &s).unwrap();
                let x = vec![vec![0.5f32; ROWS * 4], vec![0.5f32; ROWS * m.input_width(1)]];
                let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
                let out = run_forward(&m, &x);
                let g = vec![1.0f32; ROWS * 4];
                let mut d0 = vec![9.0f32; ROWS * 4];
                let mut d1 = vec![9.0f32; ROWS * m.input_width(1)];
                m.backward_input(0, &refs, &out, &g, &mut d0, ROWS);
                m.backward_input(1, &refs, &out, &g, &mut d1, ROWS);
                assert!(d0.iter().all(|&v| v == 1.0));
                assert!(d1.iter().all(|&v| v == 0.0));
            }
        }
    }

    #[test]
    fn concatenate_grad_and_shapes() {
        let cat = |axis| MergeKind::Concatenate { axis };
        // Middle axis of (batch, a, b, c), positive and negative.
        let s = shapes(&[&[2, 3, 4], &[2, 1, 4], &[2, 5, 4]]);
        assert_eq!(out_shape(cat(2), &[&[2, 3, 4], &[2, 1, 4], &[2, 5, 4]]), vec![2, 9, 4]);
        assert_eq!(out_shape(cat(-2), &[&[2, 3, 4], &[2, 1, 4], &[2, 5, 4]]), vec![2, 9, 4]);
        check(cat(2), &s);
        check(cat(-2), &s);
        check(cat(1), &shapes(&[&[2, 3], &[4, 3]]));
        check(cat(-1), &shapes(&[&[2, 3], &[2, 1], &[2, 2]]));
        check(cat(-3), &shapes(&[&[1, 3, 2], &[2, 3, 2]]));
        check(cat(-1), &shapes(&[&[3]]));
        assert_eq!(out_shape(cat(1), &[&[2, 3], &[4, 3]]), vec![6, 3]);
        assert_eq!(out_shape(cat(-1), &[&[3], &[5]]), vec![8]);
    }

    #[test]
    fn concatenate_forward_matches_formula() {
        let s = shapes(&[&[2, 3, 4], &[2, 1, 4]]);
        let x = random_inputs(&s, 13);
        let (m, out) = Merge::build("t", MergeKind::Concatenate { axis: -2 }, &s).unwrap();
        assert_eq!(out, vec![2, 4, 4]);
        let y = run_forward(&m, &x);
        for r in 0..ROWS {
            for a in 0..2 {
                for b in 0..4 {
                    for c in 0..4 {
                        let want = if b < 3 { x[0][r * 24 + a * 12 + b * 4 + c] } else { x[1][r * 8 + a * 4 + c] };
                        assert_eq!(y[r * 32 + a * 16 + b * 4 + c], want);
                    }
                }
            }
        }
    }

    #[test]
    fn dot_shapes_follow_keras() {
        let dot = |a, b| MergeKind::Dot { axes: [a, b], normalize: false };
        assert_eq!(out_shape(dot(1, 1), &[&[3], &[3]]), vec![1]);
        assert_eq!(out_shape(dot(2, 1), &[&[2, 3], &[3]]), vec![2]);
        assert_eq!(out_shape(dot(1, 1), &[&[3], &[3, 4]]), vec![4]);
        assert_eq!(out_shape(dot(1, 2), &[&[3, 5], &[4, 3]]), vec![5, 4]);
        assert_eq!(out_shape(dot(-1, -1), &[&[3, 5], &[4, 5]]), vec![3, 4]);
    }

    #[test]
    fn dot_rank1_grad() {
        for normalize in [false, true] {
            for axes in [[1, 1], [-1, -1], [1, -1]] {
                check(MergeKind::Dot { axes, normalize }, &shapes(&[&[4], &[4]]));
            }
        }
    }

    #[test]
    fn dot_rank2_rank1_grad() {
        for normalize in [false, true] {
            for a in [1, 2, -1, -2] {
                let s = if a == 1 || a == -2 { shapes(&[&[4, 3], &[4]]) } else { shapes(&[&[3, 4], &[4]]) };
                check(MergeKind::Dot { axes: [a, 1], normalize }, &s);
                let s = vec![s[1].clone(), s[0].clone()];
                check(MergeKind::Dot { axes: [1, a], normalize }, &s);
            }
        }
    }

    #[test]
    fn dot_rank2_rank2_grad() {
        for normalize in [false, true] {
            for (a, b) in [(1, 1), (1, 2), (2, 1), (2, 2), (-1, -1), (-2, -1)] {
                let sa: &[usize] = if a == 1 || a == -2 { &[4, 3] } else { &[3, 4] };
                let sb: &[usize] = if b == 1 || b == -2 { &[4, 2] } else { &[2, 4] };
                check(MergeKind::Dot { axes: [a, b], normalize }, &shapes(&[sa, sb]));
            }
        }
    }

    #[test]
    fn dot_forward_matches_formula() {
        // (batch, 3, 5) . (batch, 4, 3) along axes (1, 2) -> out[i, j] = sum_c x[c, i] y[j, c].
        let s = shapes(&[&[3, 5], &[4, 3]]);
        let x = random_inputs(&s, 21);
        for normalize in [false, true] {
            let (m, shape) = Merge::build("t", MergeKind::Dot { axes: [1, 2], normalize }, &s).unwrap();
            assert_eq!(shape, vec![5, 4]);
            let out = run_forward(&m, &x);
            for r in 0..ROWS {
                let (xr, yr) = (&x[0][r * 15..], &x[1][r * 12..]);
                for i in 0..5 {
                    for j in 0..4 {
                        let (mut d, mut nx, mut ny) = (0.0f64, 0.0f64, 0.0f64);
                        for c in 0..3 {
                            let (u, v) = (xr[c * 5 + i] as f64, yr[j * 3 + c] as f64);
                            d += u * v;
                            nx += u * u;
                            ny += v * v;
                        }
                        let want = if normalize { d / (nx.sqrt() * ny.sqrt()) } else { d };
                        let got = out[r * 20 + i * 4 + j] as f64;
                        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
                    }
                }
            }
        }
        // Cosine similarity of rank-1 samples.
        let s = shapes(&[&[2], &[2]]);
        let (m, shape) = Merge::build("t", MergeKind::Dot { axes: [1, 1], normalize: true }, &s).unwrap();
        assert_eq!(shape, vec![1]);
        let x = vec![vec![3.0, 4.0, 1.0, 0.0, 2.0, 2.0], vec![4.0, 3.0, 0.0, 5.0, -1.0, -1.0]];
        let out = run_forward(&m, &x);
        for (got, want) in out.iter().zip([24.0f32 / 25.0, 0.0, -1.0]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn dot_normalize_zero_vector_is_clamped() {
        // Keras: x * min(rsqrt(sum x^2), 1e7): a zero sample gives 0, with finite gradients.
        let s = shapes(&[&[3], &[3]]);
        let (m, _) = Merge::build("t", MergeKind::Dot { axes: [1, 1], normalize: true }, &s).unwrap();
        let x = vec![vec![0.0f32; ROWS * 3], random_inputs(&s, 4)[1].clone()];
        let refs: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
        let out = run_forward(&m, &x);
        assert!(out.iter().all(|&v| v == 0.0));
        let g = vec![1.0f32; ROWS];
        for k in 0..2 {
            let mut d = vec![0.0f32; ROWS * 3];
            m.backward_input(k, &refs, &out, &g, &mut d, ROWS);
            assert!(d.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let e = build_err(MergeKind::Add, &[&[2, 3], &[2, 4]]);
        assert!(e.contains("Inputs have incompatible shapes. Received shapes (2, 3) and (2, 4)"), "{e}");
        let e = build_err(MergeKind::Multiply, &[&[2, 3], &[2, 3], &[4, 3]]);
        assert!(e.contains("(2, 3) and (4, 3)"), "{e}");
        let e = build_err(MergeKind::Maximum, &[&[4], &[2, 3]]);
        assert!(e.contains("(2, 3) and (4,)"), "{e}");
        let e = build_err(MergeKind::Add, &[]);
        assert!(e.contains("at least 1 input"), "{e}");
        for n in [1, 3] {
            let e = build_err(MergeKind::Subtract, &vec![&[3usize][..]; n]);
            assert!(e.contains("A `Subtract` layer should be called on exactly 2 inputs"), "{e}");
        }

        let cat = |axis| MergeKind::Concatenate { axis };
        let e = build_err(cat(1), &[&[2, 3], &[4, 5]]);
        assert!(e.contains("matching shapes except for the concatenation axis"), "{e}");
        assert!(e.contains("[(None, 2, 3), (None, 4, 5)]"), "{e}");
        let e = build_err(cat(-1), &[&[2, 3], &[3]]);
        assert!(e.contains("[(None, 2, 3), (None, 3)]"), "{e}");
        let e = build_err(cat(0), &[&[3], &[3]]);
        assert!(e.contains("batch axis") && e.contains("[(None, 3), (None, 3)]"), "{e}");
        let e = build_err(cat(-3), &[&[3], &[3]]);
        assert!(e.contains("out of range") && e.contains("[(None, 3), (None, 3)]"), "{e}");
        let e = build_err(cat(2), &[&[3], &[3]]);
        assert!(e.contains("out of range"), "{e}");
        let e = build_err(cat(-1), &[&[], &[]]);
        assert!(e.contains("batch axis"), "{e}");
        let e = build_err(cat(-1), &[]);
        assert!(e.contains("at least 1 input"), "{e}");

        let dot = |a, b| MergeKind::Dot { axes: [a, b], normalize: false };
        let e = build_err(dot(1, 1), &[&[3], &[4]]);
        assert!(
            e.contains("axis values 3 (at axis 1) != 4 (at axis 1). Full input shapes: (None, 3), (None, 4)"),
            "{e}"
        );
        let e = build_err(dot(-1, -1), &[&[2, 3], &[2, 4]]);
        assert!(e.contains("Full input shapes: (None, 2, 3), (None, 2, 4)"), "{e}");
        let e = build_err(dot(1, 1), &[&[3], &[3], &[3]]);
        assert!(e.contains("A `Dot` layer should be called on a list of 2 inputs"), "{e}");
        let e = build_err(dot(1, 1), &[&[3]]);
        assert!(e.contains("list of 2 inputs"), "{e}");
        let e = build_err(dot(0, 1), &[&[3], &[3]]);
        assert!(e.contains("axis 0") && e.contains("(None, 3) and (None, 3)"), "{e}");
        let e = build_err(dot(-2, -2), &[&[3], &[3]]);
        assert!(e.contains("axis 0"), "{e}");
        let e = build_err(dot(3, 1), &[&[3, 2], &[3]]);
        assert!(e.contains("out of range") && e.contains("(None, 3, 2) and (None, 3)"), "{e}");
        let e = build_err(dot(1, 1), &[&[3, 2, 2], &[3, 4]]);
        assert!(e.contains("rank 2 or 3") && e.contains("(None, 3, 2, 2) and (None, 3, 4)"), "{e}");
        let e = build_err(dot(1, 1), &[&[], &[3]]);
        assert!(e.contains("(None,) and (None, 3)"), "{e}");
    }

    #[test]
    fn merge_kind_serde_round_trip() {
        for kind in
            [MergeKind::Add, MergeKind::Concatenate { axis: -2 }, MergeKind::Dot { axes: [1, 2], normalize: true }]
        {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<MergeKind>(&json).unwrap(), kind);
        }
    }
}
