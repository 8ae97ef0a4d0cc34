//! A chain of layers run one after the other: the body of a network, and of a residual block
//! inside it. Each layer gets, in a [`Workspace`], its output and gradient buffers, its scratch,
//! and the workspaces of any chains nested in it.

use crate::error::Result;
use crate::layers::{BackwardPass, ForwardPass, Layer, LayerSpec};
use crate::params::ParamStore;
use crate::rng::Stream;

/// Buffers for batches of up to `capacity` rows, one set per layer of a chain. Allocated when a
/// larger batch first arrives, then reused: steady-state steps allocate nothing.
#[derive(Debug, Default)]
pub struct Workspace {
    capacity: usize,
    pub outputs: Vec<Vec<f32>>,
    pub grads: Vec<Vec<f32>>,
    /// Per layer, what forward keeps for backward besides the output (often empty).
    pub saved: Vec<Vec<f32>>,
    /// Per layer, the workspaces of the chains it contains (a residual block's branches).
    pub nested: Vec<Vec<Workspace>>,
}

pub fn width(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A built chain: its layers and the per-sample output shape of each.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    pub layers: Vec<Layer>,
    pub shapes: Vec<Vec<usize>>,
}

impl Chain {
    /// Builds every layer in turn from `input_shape`, registering parameters in `params`.
    pub fn build(specs: &[LayerSpec], input_shape: &[usize], params: &mut ParamStore, seed: u64) -> Result<Self> {
        let mut chain = Chain::default();
        let mut shape = input_shape.to_vec();
        for spec in specs {
            let (layer, out) = Layer::build(spec, &shape, params, seed)?;
            chain.layers.push(layer);
            chain.shapes.push(out.clone());
            shape = out;
        }
        Ok(chain)
    }

    /// The output shape (the input shape for an empty chain).
    pub fn output_shape<'a>(&'a self, input_shape: &'a [usize]) -> &'a [usize] {
        self.shapes.last().map_or(input_shape, |s| &s[..])
    }

    /// Makes sure `ws` holds buffers for `rows` samples.
    pub fn prepare(&self, ws: &mut Workspace, rows: usize) {
        if ws.capacity >= rows && ws.outputs.len() == self.layers.len() {
            return;
        }
        ws.outputs = self.shapes.iter().map(|s| vec![0.0; rows * width(s)]).collect();
        ws.grads = self.shapes.iter().map(|s| vec![0.0; rows * width(s)]).collect();
        ws.saved = self.layers.iter().map(|l| vec![0.0; rows * l.saved_width() + l.saved_extra()]).collect();
        ws.nested = self.layers.iter().map(|l| l.nested_workspaces(rows)).collect();
        ws.capacity = rows;
    }

    /// Forward pass; the result is `ws.outputs.last()`.
    pub fn forward(
        &self,
        params: &mut [f32],
        ws: &mut Workspace,
        input: &[f32],
        rows: usize,
        training: bool,
        rng: &mut Stream,
    ) {
        self.prepare(ws, rows);
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = ws.outputs.split_at_mut(i);
            layer.forward(ForwardPass {
                params: &mut *params,
                input: if i == 0 { input } else { &done[i - 1][..] },
                output: &mut rest[0],
                saved: &mut ws.saved[i],
                nested: &mut ws.nested[i],
                rows,
                training,
                rng: &mut *rng,
            });
        }
    }

    /// Backward pass after [`Chain::forward`] on the same input, with `dL/d(out)` (or `dL/dz` of
    /// the last activation when `fused`) in `ws.grads.last()`. Writes parameter gradients into
    /// `grads` and, when given, `dL/d(input)` into `grad_in`.
    pub fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        ws: &mut Workspace,
        input: &[f32],
        mut grad_in: Option<&mut [f32]>,
        rows: usize,
        fused: bool,
        training: bool,
    ) {
        let last = self.layers.len().saturating_sub(1);
        for i in (0..self.layers.len()).rev() {
            let (below, rest) = ws.grads.split_at_mut(i);
            let pass = BackwardPass {
                params,
                grads: &mut *grads,
                input: if i == 0 { input } else { &ws.outputs[i - 1] },
                output: &ws.outputs[i],
                saved: &mut ws.saved[i],
                nested: &mut ws.nested[i],
                grad_out: &mut rest[0],
                grad_in: if i == 0 { grad_in.as_deref_mut() } else { Some(&mut below[i - 1]) },
                rows,
                skip_activation: fused && i == last,
                training,
            };
            self.layers[i].backward(pass);
        }
    }
}
