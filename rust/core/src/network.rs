//! A built network: its graph of layers, its flat parameters, and the random stream of its
//! dropout and noise layers.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::graph::{width, Graph, GraphSpec, GraphWorkspace, TensorRef};
use crate::layers::LayerSpec;
use crate::params::ParamStore;
use crate::rng::Stream;

/// Purpose tag of the dropout/noise stream (initializers use the tensor index).
const NOISE_STREAM: u64 = u64::MAX - 1;

/// A `Sequential` architecture: per-sample input shape and the layer list. Rust callers may
/// use it as shorthand for the line graph ([`GraphSpec::sequential`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub input_shape: Vec<usize>,
    pub layers: Vec<LayerSpec>,
}

impl From<&GraphSpec> for GraphSpec {
    fn from(s: &GraphSpec) -> Self {
        s.clone()
    }
}

impl From<&ModelSpec> for GraphSpec {
    fn from(s: &ModelSpec) -> Self {
        GraphSpec::sequential(s.input_shape.clone(), s.layers.clone())
    }
}

#[derive(Clone, Debug)]
pub struct Network {
    pub graph: Graph,
    pub params: ParamStore,
    seed: u64,
    noise: Stream,
}

impl Network {
    pub fn build(spec: &GraphSpec, seed: u64) -> Result<Self> {
        if spec.layers.is_empty() {
            return Err(invalid("the model has no layers; add at least one before building it"));
        }
        let mut params = ParamStore::default();
        let graph = Graph::build(spec, &mut params, seed)?;
        Ok(Self { graph, params, seed, noise: Stream::new(seed, NOISE_STREAM) })
    }

    /// Per-sample output shape of each node.
    pub fn node_shapes(&self) -> Vec<Vec<usize>> {
        self.graph.nodes.iter().map(|n| n.shape.clone()).collect()
    }

    /// Values per sample of each input.
    pub fn input_widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.graph.inputs.iter().map(|i| width(&i.shape))
    }

    /// Values per sample of output `k`.
    pub fn output_width(&self, k: usize) -> usize {
        width(self.graph.shape(self.graph.outputs[k]))
    }

    pub fn outputs(&self) -> &[TensorRef] {
        &self.graph.outputs
    }

    /// Forward pass of `rows` samples in training or inference mode.
    pub fn forward(&mut self, ws: &mut GraphWorkspace, feeds: &[&[f32]], rows: usize, training: bool) {
        self.graph.forward(&mut self.params.values, ws, feeds, rows, training, &mut self.noise);
    }

    /// Backward pass after [`Network::forward`] on the same feeds, once the losses have written
    /// the output gradients. Fills `self.params.grads`.
    pub fn backward(&mut self, ws: &mut GraphWorkspace, feeds: &[&[f32]], rows: usize, fused: &[bool]) {
        self.graph.backward(&self.params.values, &mut self.params.grads, ws, feeds, rows, fused, true);
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
