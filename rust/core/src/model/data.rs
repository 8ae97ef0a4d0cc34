//! Data handed to the model: inputs, targets and sample weights, one per model input and one
//! per output. The public edge takes ndarray views ([`Dataset::from_arrays`]: numpy arrays come
//! through rust-numpy without a copy); inside, each is a borrowed row-major slice, which is what
//! the batch loop slices and gathers.

use ndarray::ArrayViewD;
use smallvec::SmallVec;

use crate::error::{invalid, Error, Result};
use crate::threads;

/// One slice per model input or output. Up to four live inline, so slicing a batch out of a
/// data set allocates nothing for any ordinary model.
pub type Slices<'a> = SmallVec<[&'a [f32]; 4]>;

/// Samples, targets and optional per-sample weights. Also used for one batch.
#[derive(Clone, Debug)]
pub struct Dataset<'a> {
    /// Per model input, `rows x width` values.
    pub x: Slices<'a>,
    /// Per model output, its targets (empty for an output without a loss).
    pub y: Slices<'a>,
    /// Per model output, optional per-sample loss weights (Keras' `sample_weight`, with
    /// `class_weight` folded in). Empty, or one entry per output.
    pub weights: SmallVec<[Option<&'a [f32]>; 4]>,
    pub rows: usize,
    /// Per model input, the per-sample shape of the data, when known (arrays give it; slices
    /// leave it empty). The model adapts its unknown (`None`) input dimensions to it.
    pub input_shapes: SmallVec<[Shape; 4]>,
}

/// A per-sample shape, inline up to four axes.
pub type Shape = SmallVec<[usize; 4]>;

impl<'a> Dataset<'a> {
    /// One input, one output, unweighted.
    pub fn new(x: &'a [f32], y: &'a [f32], rows: usize) -> Self {
        Self {
            x: SmallVec::from_slice(&[x]),
            y: SmallVec::from_slice(&[y]),
            weights: SmallVec::new(),
            rows,
            input_shapes: SmallVec::new(),
        }
    }

    /// One input, one output, with per-sample weights.
    pub fn weighted(x: &'a [f32], y: &'a [f32], w: &'a [f32], rows: usize) -> Self {
        Self { weights: SmallVec::from_slice(&[Some(w)]), ..Self::new(x, y, rows) }
    }

    /// A data set over ndarray views: `x` per model input, `y` per model output (an empty array
    /// for an output without a loss), `weights` per output (or none at all). Every array is in
    /// standard (row-major, contiguous) layout and has one row per sample on its first axis; the
    /// model checks the per-sample sizes when it validates the data set.
    pub fn from_arrays(
        x: &[ArrayViewD<'a, f32>],
        y: &[ArrayViewD<'a, f32>],
        weights: &[Option<ArrayViewD<'a, f32>>],
    ) -> Result<Self> {
        let rows = x.first().map_or(0, |a| a.shape().first().copied().unwrap_or(0));
        let slice = |what: &str, a: &ArrayViewD<'a, f32>| -> Result<&'a [f32]> {
            let n = a.shape().first().copied().unwrap_or(0);
            if !a.is_empty() && n != rows {
                return Err(invalid(format!(
                    "{what} has {n} rows but x has {rows}; every array needs one row per sample"
                )));
            }
            a.to_slice().ok_or_else(|| invalid(format!("{what} must be a C-contiguous array")))
        };
        Ok(Self {
            x: x.iter().map(|a| slice("x", a)).collect::<Result<_>>()?,
            y: y.iter().map(|a| slice("y", a)).collect::<Result<_>>()?,
            weights: weights
                .iter()
                .map(|w| w.as_ref().map(|w| slice("sample_weight", w)).transpose())
                .collect::<Result<_>>()?,
            rows,
            input_shapes: x.iter().map(|a| a.shape().iter().skip(1).copied().collect()).collect(),
        })
    }

    /// The weights of output `k`, if any.
    pub fn weights_of(&self, k: usize) -> Option<&'a [f32]> {
        self.weights.get(k).copied().flatten()
    }

    /// Rows `lo..hi`, given the per-sample widths of the inputs and of the targets.
    pub fn slice(&self, lo: usize, hi: usize, x_widths: &[usize], y_widths: &[usize]) -> Dataset<'a> {
        Dataset {
            x: self.x.iter().zip(x_widths).map(|(x, &w)| &x[lo * w..hi * w]).collect(),
            y: self.y.iter().zip(y_widths).map(|(y, &w)| if y.is_empty() { *y } else { &y[lo * w..hi * w] }).collect(),
            weights: self.weights.iter().map(|w| w.map(|w| &w[lo..hi])).collect(),
            rows: hi - lo,
            input_shapes: SmallVec::new(),
        }
    }
}

/// Reused buffers of a shuffled batch, one per input, target and weight vector.
#[derive(Debug, Default)]
pub struct Gather {
    pub x: Vec<Vec<f32>>,
    pub y: Vec<Vec<f32>>,
    pub w: Vec<Vec<f32>>,
}

impl Gather {
    /// Sizes the buffers for batches of `rows` (once per epoch; steps reuse them).
    pub fn prepare(&mut self, data: &Dataset<'_>, rows: usize, x_widths: &[usize], y_widths: &[usize]) -> Result<()> {
        let size = |bufs: &mut Vec<Vec<f32>>, widths: &mut dyn Iterator<Item = usize>| -> Result<()> {
            let widths: Vec<usize> = widths.collect();
            bufs.resize_with(widths.len(), Vec::new);
            for (b, w) in bufs.iter_mut().zip(widths) {
                // A shuffled full batch copies the whole data set: ask for it fallibly.
                let n = rows.saturating_mul(w);
                b.try_reserve_exact(n.saturating_sub(b.len())).map_err(|_| {
                    Error::OutOfMemory(format!("cannot allocate {} bytes for a shuffled batch", n.saturating_mul(4)))
                })?;
                b.resize(n, 0.0);
            }
            Ok(())
        };
        size(&mut self.x, &mut x_widths.iter().copied())?;
        size(&mut self.y, &mut data.y.iter().zip(y_widths).map(|(y, &w)| if y.is_empty() { 0 } else { w }))?;
        size(&mut self.w, &mut data.weights.iter().map(|w| if w.is_some() { 1 } else { 0 }))
    }

    /// Copies the samples `order` of `data` into the buffers; returns them as a batch.
    pub fn batch<'g>(
        &'g mut self,
        data: &Dataset<'_>,
        order: &[usize],
        x_widths: &[usize],
        y_widths: &[usize],
    ) -> Dataset<'g> {
        let rows = order.len();
        for ((buf, src), &w) in self.x.iter_mut().zip(&data.x).zip(x_widths) {
            gather_rows(buf, src, order, w);
        }
        for ((buf, src), &w) in self.y.iter_mut().zip(&data.y).zip(y_widths) {
            if !src.is_empty() {
                gather_rows(buf, src, order, w);
            }
        }
        for (buf, src) in self.w.iter_mut().zip(&data.weights) {
            if let Some(src) = src {
                gather_rows(buf, src, order, 1);
            }
        }
        Dataset {
            x: self.x.iter().zip(x_widths).map(|(b, &w)| &b[..rows * w]).collect(),
            y: self
                .y
                .iter()
                .zip(&data.y)
                .zip(y_widths)
                .map(|((b, src), &w)| if src.is_empty() { &b[..0] } else { &b[..rows * w] })
                .collect(),
            weights: data.weights.iter().zip(&self.w).map(|(src, b)| src.map(|_| &b[..rows])).collect(),
            rows,
            input_shapes: SmallVec::new(),
        }
    }
}

/// Values gathered by one task of a parallel batch gather (a shuffled `mlp_mnist` batch, 100k
/// values, splits in two).
const GATHER_CHUNK: usize = 1 << 15;

/// Copies rows `order` of `src` (rows of `w` values) into `buf`, in parallel for large batches
/// (a pure copy: the result does not depend on the thread count).
fn gather_rows(buf: &mut [f32], src: &[f32], order: &[usize], w: usize) {
    use rayon::prelude::*;
    if w == 0 {
        return;
    }
    let copy = |(rows, idx): (&mut [f32], &[usize])| {
        for (row, &s) in rows.chunks_exact_mut(w).zip(idx) {
            row.copy_from_slice(&src[s * w..(s + 1) * w]);
        }
    };
    let buf = &mut buf[..order.len() * w];
    let rows_per_task = (GATHER_CHUNK / w).max(1);
    if buf.len() >= 2 * GATHER_CHUNK && rayon::current_num_threads() > 1 {
        buf.par_chunks_mut(rows_per_task * w).zip(order.par_chunks(rows_per_task)).for_each(copy);
    } else {
        copy((buf, order));
    }
}

/// Index of the first NaN or infinity, scanning in parallel for large inputs.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let first = |c: &[f32]| c.iter().position(|v| !v.is_finite());
    if x.len() < 2 * CHUNK {
        return if all_finite(x) { None } else { first(x) };
    }
    threads::install(|| {
        x.par_chunks(CHUNK)
            .enumerate()
            .find_first(|(_, c)| !all_finite(c))
            .map(|(k, c)| k * CHUNK + first(c).expect("found"))
    })
}

/// Whether no value is NaN or infinite: the exponent bits all set. Blocks of 256 are reduced
/// without an early exit, so the loop vectorises (a scalar `any` runs at one value per cycle).
fn all_finite(x: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    x.chunks(256)
        .all(|block| block.iter().fold(0u32, |bad, v| bad | u32::from(v.to_bits() & EXPONENT == EXPONENT)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nan_or_infinity_is_found_in_short_and_long_inputs() {
        for len in [1, 255, 256, 257, 1000, 200_000] {
            let clean = vec![1.5f32; len];
            assert_eq!(first_non_finite(&clean), None);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, len / 2, len - 1] {
                    let mut x = clean.clone();
                    x[at] = bad;
                    x[len - 1] = if at == len - 1 { bad } else { f32::NAN };
                    assert_eq!(first_non_finite(&x), Some(at), "len {len} at {at} {bad}");
                }
            }
        }
        assert_eq!(first_non_finite(&[f32::MAX, f32::MIN, f32::MIN_POSITIVE, 0.0, -0.0]), None);
    }

    #[test]
    fn a_parallel_gather_copies_the_rows_a_serial_one_does() {
        let (rows, w) = (300, 700); // 210k values: several parallel tasks
        let src: Vec<f32> = (0..rows * w).map(|i| i as f32).collect();
        let order: Vec<usize> = (0..rows).map(|r| (r * 7919) % rows).collect();
        let mut serial = vec![0.0; rows * w];
        for (r, &s) in order.iter().enumerate() {
            serial[r * w..(r + 1) * w].copy_from_slice(&src[s * w..(s + 1) * w]);
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut parallel = vec![0.0; rows * w];
        pool.install(|| gather_rows(&mut parallel, &src, &order, w));
        assert_eq!(parallel, serial);
    }
}
