//! Inference beside other calls. A layer's forward pass takes the weights mutably (training
//! mode moves the statistics of normalization layers), so a call that holds the model only by
//! shared reference runs on a [`Scratch`]: buffers of its own and its own copy of the weights,
//! refreshed only when they changed. Any number of threads may then predict or evaluate one
//! model at once, each on its scratch.

use crate::error::{invalid, Error, Result};
use crate::graph::{Graph, GraphWorkspace};
use crate::rng::Stream;
use crate::threads;

use super::data::{Dataset, Slices};
use super::heads::{Logs, Running};
use super::step::heads_loss;
use super::Model;

/// Buffers and a weight copy for inference on a shared model. Keep one per thread, or a pool
/// of them, so steady-state calls allocate nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Which weights `params` holds (the caller's version number); `None` before the first use.
    version: Option<u64>,
    params: Vec<f32>,
    ws: GraphWorkspace,
}

impl Scratch {
    /// Copies `values` unless this scratch already holds `version` of them.
    fn sync(&mut self, values: &[f32], version: u64) -> Result<()> {
        if self.version != Some(version) || self.params.len() != values.len() {
            self.version = None;
            self.params.clear();
            self.params.try_reserve_exact(values.len()).map_err(|_| {
                Error::OutOfMemory(format!("cannot allocate {} bytes for a copy of the weights", values.len() * 4))
            })?;
            self.params.extend_from_slice(values);
            self.version = Some(version);
        }
        Ok(())
    }
}

/// Runs the graph over `rows` samples of `x` in batches, writing output `k` into `out[k]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_batches(
    graph: &Graph,
    params: &mut [f32],
    noise: &mut Stream,
    ws: &mut GraphWorkspace,
    x: &[&[f32]],
    rows: usize,
    batch_size: usize,
    training: bool,
    out: &mut [&mut [f32]],
) {
    let xw: Vec<usize> = graph.inputs.iter().map(|i| crate::graph::width(&i.shape)).collect();
    for lo in (0..rows).step_by(batch_size) {
        let hi = (lo + batch_size).min(rows);
        let feeds: Slices<'_> = x.iter().zip(&xw).map(|(x, &w)| &x[lo * w..hi * w]).collect();
        graph.forward(params, ws, &feeds, hi - lo, training, noise);
        for (o, &r) in out.iter_mut().zip(&graph.outputs) {
            let ow = crate::graph::width(graph.shape(r));
            o[lo * ow..hi * ow].copy_from_slice(graph.tensor(ws, &feeds, r, hi - lo));
        }
    }
}

impl Model {
    /// Checks the inputs and output buffers of a forward pass.
    pub(super) fn check_call(&self, x: &[&[f32]], rows: usize, batch_size: usize, out: &[&mut [f32]]) -> Result<()> {
        self.validate_x(x, rows, "predict")?;
        let outputs = self.net.outputs().len();
        if out.len() != outputs || (0..outputs).any(|k| out[k].len() != rows * self.net.output_width(k)) {
            return Err(invalid("predict: output buffers have the wrong size"));
        }
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        Ok(())
    }

    /// [`Model::predict`] through a shared reference, on `scratch`. `version` names the current
    /// weights: the scratch copies them only when it holds another version.
    pub fn predict_with(
        &self,
        scratch: &mut Scratch,
        version: u64,
        x: &[&[f32]],
        rows: usize,
        batch_size: usize,
        out: &mut [&mut [f32]],
    ) -> Result<()> {
        self.check_call(x, rows, batch_size, out)?;
        scratch.sync(&self.net.params.values, version)?;
        let Scratch { params, ws, .. } = scratch;
        self.net.graph.try_prepare(ws, batch_size.min(rows))?;
        // Inference draws no noise; the stream only completes the signature.
        let mut noise = Stream::new(0, 0);
        let graph = &self.net.graph;
        threads::install(|| forward_batches(graph, params, &mut noise, ws, x, rows, batch_size, false, out));
        Ok(())
    }

    /// [`Model::evaluate`] through a shared reference, on `scratch` (see [`Model::predict_with`]).
    pub fn evaluate_with(
        &self,
        scratch: &mut Scratch,
        version: u64,
        data: &Dataset<'_>,
        batch_size: usize,
    ) -> Result<Logs> {
        self.validate(data, "evaluate")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let (xw, tw) = self.widths();
        let c = self.compiled("evaluate")?;
        scratch.sync(&self.net.params.values, version)?;
        let Scratch { params, ws, .. } = scratch;
        self.net.graph.try_prepare(ws, batch_size.min(data.rows))?;
        let net = &self.net;
        Ok(threads::install(|| {
            let penalty = net.params.penalty();
            let mut running = Running::new(&c.heads);
            let mut noise = Stream::new(0, 0);
            for lo in (0..data.rows).step_by(batch_size) {
                let b = data.slice(lo, (lo + batch_size).min(data.rows), &xw, &tw);
                net.graph.forward(params, ws, &b.x, b.rows, false, &mut noise);
                heads_loss(net, ws, c, &b, &mut running, false);
                running.end_batch(b.rows, penalty);
            }
            running.logs(c)
        }))
    }
}
