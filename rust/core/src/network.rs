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
    /// The architecture as declared (with its unknown input dimensions), to re-instantiate the
    /// graph at the shapes of each call's data.
    pub spec: GraphSpec,
    /// Per node, its per-sample output shape as declared: `None` where it follows an unknown
    /// input dimension.
    declared: Vec<Vec<Option<usize>>>,
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
        let declared = graph.nodes.iter().map(|n| n.shape.iter().copied().map(Some).collect()).collect();
        let mut net =
            Self { spec: spec.clone(), declared, graph, params, seed, noise: Stream::new(seed, NOISE_STREAM) };
        if spec.inputs.iter().any(|i| !i.unknown.is_empty()) {
            // Instantiated at other sizes for the unknown dimensions, the graph must keep its
            // weights (checked by `set_input_shapes`); the node dimensions that change are
            // unknown too.
            let probe: Vec<Vec<usize>> = spec
                .inputs
                .iter()
                .map(|i| {
                    i.shape.iter().enumerate().map(|(a, &d)| if i.unknown.contains(&a) { d + 1 } else { d }).collect()
                })
                .collect();
            let probe: Vec<&[usize]> = probe.iter().map(Vec::as_slice).collect();
            let mut other = net.clone();
            other.set_input_shapes(&probe).map_err(|e| {
                invalid(format!(
                    "a weight's shape would depend on an input dimension that is None ({e}); give that dimension \
                     a size in keras.Input, or pool it away before a Dense layer"
                ))
            })?;
            for (declared, node) in net.declared.iter_mut().zip(&other.graph.nodes) {
                declared.iter_mut().zip(&node.shape).filter(|(d, &s)| **d != Some(s)).for_each(|(d, _)| *d = None);
            }
        }
        Ok(net)
    }

    /// The declared per-sample shape of tensor `r` (`None` on dimensions each call's data sets).
    pub fn declared_shape(&self, r: TensorRef) -> Vec<Option<usize>> {
        match r {
            TensorRef::Input(k) => self.spec.inputs[k].declared_shape(),
            TensorRef::Node(j) => self.declared[j].clone(),
        }
    }

    /// The per-sample shape of each input the graph is built at.
    pub fn input_shapes(&self) -> impl Iterator<Item = &[usize]> + '_ {
        self.graph.inputs.iter().map(|i| i.shape.as_slice())
    }

    /// Re-instantiates the graph for inputs of per-sample `shapes` (their unknown dimensions
    /// set by the data); the weights stay where they are. Returns whether the graph changed.
    pub fn set_input_shapes(&mut self, shapes: &[&[usize]]) -> Result<bool> {
        match self.instantiate(shapes)? {
            Some(graph) => {
                self.graph = graph;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The graph instantiated at per-sample input `shapes`, or `None` when the current one
    /// already is. Its layers address the same weights as the current graph's: no weight's
    /// shape may depend on an unknown dimension (checked).
    pub fn instantiate(&self, shapes: &[&[usize]]) -> Result<Option<Graph>> {
        if self.input_shapes().eq(shapes.iter().copied()) {
            return Ok(None);
        }
        let spec = self.spec.at_input_shapes(shapes)?;
        let mut scratch = ParamStore::default();
        let mut graph = Graph::build(&spec, &mut scratch, self.seed)?;
        for (new, old) in scratch.tensors.iter().zip(&self.params.tensors) {
            if new.shape != old.shape {
                return Err(invalid(format!(
                    "weight '{}' of shape {:?} would need shape {:?} for inputs of per-sample shape {shapes:?}",
                    old.name, old.shape, new.shape
                )));
            }
        }
        // Frozen flags live in the graph's layers; the store's are already set.
        let frozen: Vec<bool> = self.graph.layers.iter().map(|l| l.frozen).collect();
        graph.set_frozen(&frozen, &mut scratch)?;
        Ok(Some(graph))
    }

    /// Declared per-sample output shape of each node (`None` on unknown dimensions).
    pub fn node_shapes(&self) -> Vec<Vec<Option<usize>>> {
        self.declared.clone()
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

    /// Inference pass of `rows` samples: nothing kept for backward ([`Graph::infer`]).
    pub fn infer(&mut self, ws: &mut GraphWorkspace, feeds: &[&[f32]], rows: usize) {
        self.graph.infer(&mut self.params.values, ws, feeds, rows);
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
