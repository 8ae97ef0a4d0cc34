//! A built sequential network: its layers, its flat parameters, and the buffers its forward and
//! backward passes reuse from batch to batch.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::layers::{BackwardPass, ForwardPass, Layer, LayerSpec};
use crate::params::ParamStore;
use crate::rng::Stream;

/// Purpose tag of the dropout/noise stream (initializers use the tensor index).
const NOISE_STREAM: u64 = u64::MAX - 1;

/// The architecture: per-sample input shape and the layer list (what `Sequential` describes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub input_shape: Vec<usize>,
    pub layers: Vec<LayerSpec>,
}

/// Activation and gradient buffers for batches of up to `capacity` rows, one pair per layer.
/// Allocated when a larger batch first arrives, then reused: steady-state steps allocate nothing.
#[derive(Debug, Default)]
pub struct Workspace {
    capacity: usize,
    pub outputs: Vec<Vec<f32>>,
    pub grads: Vec<Vec<f32>>,
    /// Per layer, what forward keeps for backward besides the output (often empty).
    pub saved: Vec<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct Network {
    pub layers: Vec<Layer>,
    pub params: ParamStore,
    pub input_shape: Vec<usize>,
    /// Per-sample output shape of each layer.
    pub shapes: Vec<Vec<usize>>,
    seed: u64,
    noise: Stream,
}

fn width(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Network {
    pub fn build(spec: &ModelSpec, seed: u64) -> Result<Self> {
        if spec.layers.is_empty() {
            return Err(invalid("the model has no layers; add at least one before building it"));
        }
        if spec.input_shape.is_empty() || spec.input_shape.contains(&0) {
            return Err(invalid(format!("input shape must be non-empty and positive; got {:?}", spec.input_shape)));
        }
        let mut params = ParamStore::default();
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut shapes = Vec::with_capacity(spec.layers.len());
        let mut shape = spec.input_shape.clone();
        for ls in &spec.layers {
            let (layer, out) = Layer::build(ls, &shape, &mut params, seed)?;
            layers.push(layer);
            shapes.push(out.clone());
            shape = out;
        }
        Ok(Self {
            layers,
            params,
            input_shape: spec.input_shape.clone(),
            shapes,
            seed,
            noise: Stream::new(seed, NOISE_STREAM),
        })
    }

    /// Values per input sample.
    pub fn input_width(&self) -> usize {
        width(&self.input_shape)
    }

    /// Values per output sample.
    pub fn output_width(&self) -> usize {
        width(self.shapes.last().expect("a built network has layers"))
    }

    /// Makes sure `ws` holds buffers for `rows` samples.
    pub fn prepare(&self, ws: &mut Workspace, rows: usize) {
        if ws.capacity >= rows && ws.outputs.len() == self.layers.len() {
            return;
        }
        ws.outputs = self.shapes.iter().map(|s| vec![0.0; rows * width(s)]).collect();
        ws.grads = self.shapes.iter().map(|s| vec![0.0; rows * width(s)]).collect();
        ws.saved = self.layers.iter().map(|l| vec![0.0; rows * l.saved_width() + l.saved_extra()]).collect();
        ws.capacity = rows;
    }

    /// Forward pass of `rows` samples in training or inference mode; the result is
    /// `ws.outputs.last()`.
    pub fn forward(&mut self, ws: &mut Workspace, input: &[f32], rows: usize, training: bool) {
        self.prepare(ws, rows);
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = ws.outputs.split_at_mut(i);
            layer.forward(ForwardPass {
                params: &mut self.params.values,
                input: if i == 0 { input } else { &done[i - 1][..] },
                output: &mut rest[0],
                saved: &mut ws.saved[i],
                rows,
                training,
                rng: &mut self.noise,
            });
        }
    }

    /// Restarts the dropout/noise stream (gradient checks need the same masks every pass).
    pub fn reset_noise(&mut self) {
        self.noise = Stream::new(self.seed, NOISE_STREAM);
    }

    /// Backward pass after [`Network::forward`] on the same input, with `dL/d(out)` (or `dL/dz`
    /// of the last activation when `fused`) in `ws.grads.last()`. Fills `self.params.grads`.
    pub fn backward(&mut self, ws: &mut Workspace, input: &[f32], rows: usize, fused: bool) {
        let last = self.layers.len() - 1;
        for i in (0..self.layers.len()).rev() {
            let (below, rest) = ws.grads.split_at_mut(i);
            let pass = BackwardPass {
                params: &self.params.values,
                grads: &mut self.params.grads,
                input: if i == 0 { input } else { &ws.outputs[i - 1] },
                output: &ws.outputs[i],
                saved: &mut ws.saved[i],
                grad_out: &mut rest[0],
                grad_in: if i == 0 { None } else { Some(&mut below[i - 1]) },
                rows,
                skip_activation: fused && i == last,
            };
            self.layers[i].backward(pass);
        }
    }
}
