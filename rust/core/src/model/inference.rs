//! Inference beside other calls. A layer's forward pass takes the weights mutably (training
//! mode moves the statistics of normalization layers), so a call that holds the model only by
//! shared reference runs on a [`Scratch`]: buffers of its own and its own copy of the weights,
//! refreshed only when they changed. Any number of threads may then predict or evaluate one
//! model at once, each on its scratch. Data whose unknown (`None`) dimensions differ from the
//! shapes the model's graph is instantiated at runs on a graph of the scratch's own.

use ndarray::{ArrayViewD, ArrayViewMutD};
use smallvec::SmallVec;

use crate::error::{invalid, Error, Result};
use crate::graph::{width, Graph, GraphWorkspace};
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
    /// The model's graph instantiated at the input shapes of this scratch's last call, when
    /// they are not the ones of the model's own graph.
    graph: Option<Graph>,
}

/// Copies `values` into a scratch's `params` unless it already holds `version` of them (`held`).
fn sync(held: &mut Option<u64>, params: &mut Vec<f32>, values: &[f32], version: u64) -> Result<()> {
    if *held != Some(version) || params.len() != values.len() {
        *held = None;
        params.clear();
        params.try_reserve_exact(values.len()).map_err(|_| {
            Error::OutOfMemory(format!("cannot allocate {} bytes for a copy of the weights", values.len() * 4))
        })?;
        params.extend_from_slice(values);
        *held = Some(version);
    }
    Ok(())
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
        if training {
            graph.forward(params, ws, &feeds, hi - lo, true, noise);
        } else {
            graph.infer(params, ws, &feeds, hi - lo);
        }
        for (o, &r) in out.iter_mut().zip(&graph.outputs) {
            let ow = crate::graph::width(graph.shape(r));
            o[lo * ow..hi * ow].copy_from_slice(graph.tensor(ws, &feeds, r, hi - lo));
        }
    }
}

impl Model {
    /// The graph to run inputs of per-sample `shapes` on: the model's when it is instantiated at
    /// them, else one instantiated in `slot` (kept for the next call with the same shapes).
    fn graph_for<'a>(&'a self, slot: &'a mut Option<Graph>, shapes: &[&[usize]]) -> Result<&'a Graph> {
        if shapes.is_empty() || self.net.input_shapes().eq(shapes.iter().copied()) {
            return Ok(&self.net.graph);
        }
        let fits =
            slot.as_ref().is_some_and(|g| g.inputs.iter().map(|i| i.shape.as_slice()).eq(shapes.iter().copied()));
        if !fits {
            *slot = self.net.instantiate(shapes)?;
        }
        Ok(slot.as_ref().unwrap_or(&self.net.graph))
    }

    /// Per-sample output shapes for inputs of per-sample `shapes`, on `scratch` (whose graph for
    /// them is then ready for [`Model::predict_with`]).
    pub fn output_shapes_with(&self, scratch: &mut Scratch, shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let graph = self.graph_for(&mut scratch.graph, shapes)?;
        Ok(graph.outputs.iter().map(|&r| graph.shape(r).to_vec()).collect())
    }

    /// Checks the inputs and output buffers of a forward pass on `graph`.
    pub(super) fn check_call(
        &self,
        graph: &Graph,
        x: &[&[f32]],
        rows: usize,
        batch_size: usize,
        out: &[&mut [f32]],
    ) -> Result<()> {
        self.validate_x(graph, x, rows, "predict")?;
        let outputs = graph.outputs.len();
        if out.len() != outputs || (0..outputs).any(|k| out[k].len() != rows * width(graph.shape(graph.outputs[k]))) {
            return Err(invalid("predict: output buffers have the wrong size"));
        }
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        Ok(())
    }

    /// [`Model::predict`] through a shared reference, on `scratch`, into caller-owned arrays
    /// (`out[k]` of shape `(rows, *output_shape)`; see [`Model::output_shapes_with`]).
    /// `version` names the current weights: the scratch copies them only when it holds another
    /// version.
    pub fn predict_with(
        &self,
        scratch: &mut Scratch,
        version: u64,
        x: &[ArrayViewD<'_, f32>],
        batch_size: usize,
        out: &mut [ArrayViewMutD<'_, f32>],
    ) -> Result<()> {
        let rows = x.first().and_then(|a| a.shape().first().copied()).unwrap_or(0);
        let shapes: SmallVec<[&[usize]; 4]> = x.iter().map(|a| a.shape().get(1..).unwrap_or(&[])).collect();
        let xs = x
            .iter()
            .map(|a| a.to_slice().ok_or_else(|| invalid("predict: x must be a C-contiguous array")))
            .collect::<Result<Slices<'_>>>()?;
        let mut outs: SmallVec<[&mut [f32]; 4]> = SmallVec::new();
        for o in out.iter_mut() {
            outs.push(o.as_slice_mut().ok_or_else(|| invalid("predict: outputs must be C-contiguous arrays"))?);
        }
        let Scratch { params, ws, graph: slot, version: held } = scratch;
        let graph = self.graph_for(slot, &shapes)?;
        self.check_call(graph, &xs, rows, batch_size, &outs)?;
        sync(held, params, &self.net.params.values, version)?;
        graph.try_prepare_inference(ws, batch_size.min(rows))?;
        // Inference draws no noise; the stream only completes the signature.
        let mut noise = Stream::new(0, 0);
        threads::install_busy_if(rows > batch_size, || {
            forward_batches(graph, params, &mut noise, ws, &xs, rows, batch_size, false, &mut outs)
        });
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
        let Scratch { params, ws, graph: slot, version: held } = scratch;
        let shapes: SmallVec<[&[usize]; 4]> = data.input_shapes.iter().map(|s| s.as_slice()).collect();
        let graph = self.graph_for(slot, &shapes)?;
        self.validate_on(graph, data, "evaluate")?;
        if batch_size == 0 {
            return Err(invalid("batch_size must be a positive integer"));
        }
        let (xw, tw) = super::widths_on(graph, self.target_widths_on(graph)?);
        let c = self.compiled("evaluate")?;
        sync(held, params, &self.net.params.values, version)?;
        graph.try_prepare_inference(ws, batch_size.min(data.rows))?;
        let net = &self.net;
        Ok(threads::install_busy_if(data.rows > batch_size, || {
            let penalty = net.params.penalty();
            let mut running = Running::new(&c.heads);
            for lo in (0..data.rows).step_by(batch_size) {
                let b = data.slice(lo, (lo + batch_size).min(data.rows), &xw, &tw);
                graph.infer(params, ws, &b.x, b.rows);
                heads_loss(graph, ws, &c.heads, &b, &mut running, false);
                running.end_batch(b.rows, penalty);
            }
            running.logs(c)
        }))
    }
}
