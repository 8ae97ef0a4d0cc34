//! A built sequential network: its chain of layers, its flat parameters, and the random stream
//! of its dropout and noise layers.

use serde::{Deserialize, Serialize};

pub use crate::chain::Workspace;
use crate::chain::{width, Chain};
use crate::error::{invalid, Result};
use crate::layers::LayerSpec;
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

#[derive(Clone, Debug)]
pub struct Network {
    pub body: Chain,
    pub params: ParamStore,
    pub input_shape: Vec<usize>,
    seed: u64,
    noise: Stream,
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
        let body = Chain::build(&spec.layers, &spec.input_shape, &mut params, seed)?;
        Ok(Self { body, params, input_shape: spec.input_shape.clone(), seed, noise: Stream::new(seed, NOISE_STREAM) })
    }

    /// Per-sample output shape of each layer.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.body.shapes
    }

    /// Values per input sample.
    pub fn input_width(&self) -> usize {
        width(&self.input_shape)
    }

    /// Values per output sample.
    pub fn output_width(&self) -> usize {
        width(self.body.output_shape(&self.input_shape))
    }

    /// Forward pass of `rows` samples in training or inference mode; the result is
    /// `ws.outputs.last()`.
    pub fn forward(&mut self, ws: &mut Workspace, input: &[f32], rows: usize, training: bool) {
        self.body.forward(&mut self.params.values, ws, input, rows, training, &mut self.noise);
    }

    /// Backward pass after [`Network::forward`] on the same input, with `dL/d(out)` (or `dL/dz`
    /// of the last activation when `fused`) in `ws.grads.last()`. Fills `self.params.grads`.
    pub fn backward(&mut self, ws: &mut Workspace, input: &[f32], rows: usize, fused: bool) {
        self.body.backward(&self.params.values, &mut self.params.grads, ws, input, None, rows, fused);
    }

    /// The dropout/noise stream (saved with the model).
    pub fn noise(&self) -> &Stream {
        &self.noise
    }

    pub fn set_noise(&mut self, s: Stream) {
        self.noise = s;
    }

    /// Restarts the dropout/noise stream (gradient checks need the same masks every pass).
    pub fn reset_noise(&mut self) {
        self.noise = Stream::new(self.seed, NOISE_STREAM);
    }
}
