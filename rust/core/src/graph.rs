//! The engine's network: a directed acyclic graph of layer calls ("nodes") over tensors.
//!
//! A model's tensors are its inputs and the output of every node. A layer may be called by
//! several nodes (a shared layer): it is built once, at its first call, and every call uses the
//! same weights. A `Sequential` model is the graph that is a line.
//!
//! Forward runs the nodes in their (topological) order. Backward runs them in reverse, with two
//! sums the chain rule asks for:
//! - a tensor that feeds several nodes gets the sum of their input gradients
//!   (`dL/dt = sum_c dL/dt|_c`): the first contribution is written in place, later ones go
//!   through a scratch buffer and are added;
//! - a layer called by several nodes gets the sum of every call's weight gradient
//!   (`dL/dW = sum_n dL/dW|_n`): a layer's backward overwrites its weight gradient, so the
//!   gradient of the calls already run is stashed and added back.
//!
//! Nodes no loss depends on, and nodes with no trainable weight at or above them, are skipped
//! in backward (a frozen trunk is not back-propagated). Buffers are sized for the largest batch
//! seen and reused, so steady-state steps allocate nothing.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::error::{invalid, Result};
use crate::layers::{BackwardPass, ForwardPass, LayerKernel, LayerSpec, Op};
use crate::params::ParamStore;
use crate::rng::Stream;

/// Values per sample of a tensor of per-sample `shape`.
pub fn width(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The size an unknown (`None`) input dimension has until data gives it one: the graph is built
/// at it, so the weights exist before any data is seen.
pub const UNKNOWN_DIM: usize = 64;

/// A second size for unknown dimensions: shape inference builds a layer at both and marks the
/// output dimensions that differ as unknown.
const UNKNOWN_DIM_PROBE: usize = 97;

/// A model input: its name and per-sample shape. In JSON an unknown dimension (Keras' `None`,
/// e.g. a sequence length) is `null`; each call's data gives it its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "InputJson", into = "InputJson")]
pub struct InputSpec {
    pub name: String,
    /// The per-sample shape the graph is built at ([`UNKNOWN_DIM`] on unknown axes).
    pub shape: Vec<usize>,
    /// Per-sample axes whose size is unknown in the model.
    pub unknown: Vec<usize>,
}

impl InputSpec {
    /// An input of fixed per-sample `shape`.
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        Self { name: name.into(), shape, unknown: Vec::new() }
    }

    /// The shape with `None` on unknown axes.
    pub fn declared_shape(&self) -> Vec<Option<usize>> {
        self.shape.iter().enumerate().map(|(a, &d)| (!self.unknown.contains(&a)).then_some(d)).collect()
    }
}

#[derive(Serialize, Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<Option<usize>>,
}

impl From<InputJson> for InputSpec {
    fn from(j: InputJson) -> Self {
        let unknown = j.shape.iter().enumerate().filter(|(_, d)| d.is_none()).map(|(a, _)| a).collect();
        Self { name: j.name, shape: j.shape.iter().map(|d| d.unwrap_or(UNKNOWN_DIM)).collect(), unknown }
    }
}

impl From<InputSpec> for InputJson {
    fn from(i: InputSpec) -> Self {
        Self { shape: i.declared_shape(), name: i.name }
    }
}

/// A tensor of the graph: model input `k`, or the output of node `j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorRef {
    Input(usize),
    Node(usize),
}

/// One call of a layer on tensors that come before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Index into [`GraphSpec::layers`].
    pub layer: usize,
    pub inputs: Vec<TensorRef>,
}

/// The architecture of a model as the engine receives it: every distinct layer once, and the
/// calls that connect them, in an order where each node's inputs come before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphSpec {
    pub inputs: Vec<InputSpec>,
    pub layers: Vec<LayerSpec>,
    pub nodes: Vec<NodeSpec>,
    pub outputs: Vec<TensorRef>,
}

impl GraphSpec {
    /// The line graph of a `Sequential` model: one input, each layer called on the previous one.
    pub fn sequential(input_shape: Vec<usize>, layers: Vec<LayerSpec>) -> Self {
        let nodes = (0..layers.len())
            .map(|j| NodeSpec {
                layer: j,
                inputs: vec![if j == 0 { TensorRef::Input(0) } else { TensorRef::Node(j - 1) }],
            })
            .collect();
        let outputs = vec![if layers.is_empty() { TensorRef::Input(0) } else { TensorRef::Node(layers.len() - 1) }];
        Self { inputs: vec![InputSpec::new("input", input_shape)], layers, nodes, outputs }
    }

    /// The same graph with concrete per-sample input shapes (the data of one call): ranks and
    /// known dimensions must match the declared ones.
    pub fn at_input_shapes(&self, shapes: &[&[usize]]) -> Result<GraphSpec> {
        if shapes.len() != self.inputs.len() {
            return Err(invalid(format!(
                "the model has {} input(s); got {} array(s)",
                self.inputs.len(),
                shapes.len()
            )));
        }
        let mut spec = self.clone();
        for (input, &shape) in spec.inputs.iter_mut().zip(shapes) {
            let declared = input.declared_shape();
            let fits =
                declared.len() == shape.len() && declared.iter().zip(shape).all(|(d, &s)| d.is_none_or(|d| d == s));
            if !fits || shape.contains(&0) {
                return Err(invalid(format!(
                    "input '{}' expects per-sample shape {} but the data has {:?}",
                    input.name,
                    show_declared(&declared),
                    shape
                )));
            }
            input.shape = shape.to_vec();
        }
        Ok(spec)
    }
}

/// A declared per-sample shape as Keras prints it, with the batch axis: `(None, None, 3)`.
fn show_declared(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = std::iter::once(None)
        .chain(shape.iter().copied())
        .map(|d| d.map_or("None".into(), |d| d.to_string()))
        .collect();
    format!("({})", dims.join(", "))
}

/// A built layer and where its weights are.
#[derive(Clone, Debug)]
pub struct GraphLayer {
    pub name: String,
    pub op: Op,
    /// Per-sample shapes of the inputs it was built for; later calls must match.
    pub input_shapes: Vec<Vec<usize>>,
    /// Its tensors in the parameter store (indices) and their values (flat offsets).
    pub tensors: Range<usize>,
    pub values: Range<usize>,
    /// Frozen (`trainable = False`): no weight update; BatchNormalization runs in inference mode.
    pub frozen: bool,
}

impl GraphLayer {
    fn has_trainable_weights(&self, params: &ParamStore) -> bool {
        !self.frozen
            && params.tensors[self.tensors.clone()]
                .iter()
                .any(|t| t.trainable && t.role != crate::params::Role::NonTrainable)
    }

    /// Whether its training behaviour uses batch statistics (what freezing turns off).
    fn uses_batch_statistics(&self) -> bool {
        matches!(&self.op, Op::Unary(l) if l.uses_batch_statistics())
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub layer: usize,
    pub inputs: Vec<TensorRef>,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
}

/// A built graph: layers, nodes, and what backward needs to know about them.
#[derive(Clone, Debug)]
pub struct Graph {
    pub inputs: Vec<InputSpec>,
    pub layers: Vec<GraphLayer>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<TensorRef>,
    /// Per node: some trainable weight is at or above it (or, with `input_grads`, a graph
    /// input), so backward must reach it.
    needs_grad: Vec<bool>,
    /// Backward also gives `dL/d(input)` for each graph input (a graph nested in a layer).
    input_grads: bool,
    /// Largest per-sample width of any tensor, and weight count of any shared layer (scratch).
    max_width: usize,
    max_shared_values: usize,
    /// Inference passes keep a node's output only until its last reader has run: the buffer
    /// each node writes ([`inference_buffers`]), and each buffer's values per sample.
    inference_buffer: Vec<usize>,
    inference_widths: Vec<usize>,
}

/// Buffers for the node outputs of an inference pass: a node writes a buffer that no tensor
/// still to be read holds, so a line graph needs two (three with a branch alive). The graph's
/// outputs keep theirs. Returns the buffer of each node and each buffer's values per sample
/// (the widest tensor it holds); best fit keeps wide buffers for wide tensors.
fn inference_buffers(nodes: &[Node], outputs: &[TensorRef]) -> (Vec<usize>, Vec<usize>) {
    // The last node that reads each node's output (itself when none does; never for outputs).
    let mut last: Vec<usize> = (0..nodes.len()).collect();
    for (j, node) in nodes.iter().enumerate() {
        for r in &node.inputs {
            if let TensorRef::Node(i) = *r {
                last[i] = last[i].max(j);
            }
        }
    }
    for r in outputs {
        if let TensorRef::Node(i) = *r {
            last[i] = usize::MAX;
        }
    }
    let (mut buffer, mut widths, mut free) = (vec![0; nodes.len()], Vec::<usize>::new(), Vec::<usize>::new());
    for (j, node) in nodes.iter().enumerate() {
        let w = width(&node.shape);
        let fits = free.iter().enumerate().filter(|(_, &b)| widths[b] >= w).min_by_key(|(_, &b)| widths[b]);
        let widest = free.iter().enumerate().max_by_key(|(_, &b)| widths[b]);
        buffer[j] = match fits.or(widest).map(|(k, _)| k) {
            Some(k) => free.swap_remove(k),
            None => {
                widths.push(0);
                widths.len() - 1
            }
        };
        widths[buffer[j]] = widths[buffer[j]].max(w);
        // Buffers whose tensor was read for the last time by this node are free for the next.
        let read = node.inputs.iter().filter_map(|r| match *r {
            TensorRef::Node(i) => Some(i),
            TensorRef::Input(_) => None,
        });
        for i in read.chain(std::iter::once(j)) {
            if last[i] == j && !free.contains(&buffer[i]) {
                free.push(buffer[i]);
            }
        }
    }
    (buffer, widths)
}

/// How a forward pass runs: the layers' behaviour (`training`), whether a backward pass follows
/// (`keep`: then the layers keep what it reads), and the stream of dropout masks and noise.
struct Pass<'r> {
    training: bool,
    keep: bool,
    rng: &'r mut Stream,
}

/// Buffers of a graph for batches of up to `capacity` rows.
#[derive(Debug, Default)]
pub struct GraphWorkspace {
    capacity: usize,
    /// Sized for training (what backward reads is kept), not only for inference.
    keeps: bool,
    /// The input shapes the buffers were sized for (a graph re-instantiated at other shapes
    /// resizes them).
    input_shapes: Vec<Vec<usize>>,
    pub outputs: Vec<Vec<f32>>,
    pub grads: Vec<Vec<f32>>,
    saved: Vec<Vec<f32>>,
    nested: Vec<Vec<GraphWorkspace>>,
    /// Per node: its output gradient holds a value in the current backward pass.
    written: Vec<bool>,
    /// Per layer: its weight gradient holds a value in the current backward pass.
    layer_done: Vec<bool>,
    scratch: Vec<f32>,
    stash: Vec<f32>,
    /// `dL/d(input)` per graph input, and whether it holds a value (nested graphs only).
    input_grads: Vec<Vec<f32>>,
    input_written: Vec<bool>,
}

impl GraphWorkspace {
    /// Floats held in its buffers, nested workspaces included (what a pass costs in memory).
    pub fn values_held(&self) -> usize {
        let lens = |v: &[Vec<f32>]| v.iter().map(Vec::len).sum::<usize>();
        lens(&self.outputs)
            + lens(&self.grads)
            + lens(&self.saved)
            + lens(&self.input_grads)
            + self.scratch.len()
            + self.stash.len()
            + self.nested.iter().flatten().map(GraphWorkspace::values_held).sum::<usize>()
    }
}

impl Graph {
    /// Builds every layer at its first call, registering its weights in `params` in call order.
    pub fn build(spec: &GraphSpec, params: &mut ParamStore, seed: u64) -> Result<Self> {
        Self::build_with(spec, params, seed, false)
    }

    /// A graph inside a layer (a residual block): backward also gives the gradient of its
    /// inputs ([`Graph::input_grad`]).
    pub fn build_nested(spec: &GraphSpec, params: &mut ParamStore, seed: u64) -> Result<Self> {
        Self::build_with(spec, params, seed, true)
    }

    fn build_with(spec: &GraphSpec, params: &mut ParamStore, seed: u64, input_grads: bool) -> Result<Self> {
        if spec.inputs.is_empty() {
            return Err(invalid("the model has no inputs"));
        }
        if spec.outputs.is_empty() {
            return Err(invalid("the model has no outputs"));
        }
        for i in &spec.inputs {
            if i.shape.is_empty() || i.shape.contains(&0) {
                return Err(invalid(format!(
                    "input '{}': shape must be non-empty and positive; got {:?}",
                    i.name, i.shape
                )));
            }
            checked_width(&i.shape, || format!("input '{}'", i.name))?;
        }
        let mut names = std::collections::HashSet::new();
        for l in &spec.layers {
            if !names.insert(l.name()) {
                return Err(invalid(format!(
                    "the name '{}' is used by two layers of the model; layer names must be unique",
                    l.name()
                )));
            }
        }
        let mut layers: Vec<Option<GraphLayer>> = vec![None; spec.layers.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(spec.nodes.len());
        for (j, n) in spec.nodes.iter().enumerate() {
            let lspec = spec.layers.get(n.layer).ok_or_else(|| invalid(format!("node {j}: no layer #{}", n.layer)))?;
            let mut shapes = Vec::with_capacity(n.inputs.len());
            for &r in &n.inputs {
                shapes.push(shape_of(spec, &nodes, r).ok_or_else(|| {
                    invalid(format!("layer '{}': input {r:?} is not defined before it", lspec.name()))
                })?);
            }
            let shape = match &layers[n.layer] {
                Some(built) => {
                    if built.input_shapes != shapes {
                        return Err(invalid(format!(
                            "layer '{}' was built for input shape(s) {} and cannot be called on {}",
                            built.name,
                            show(&built.input_shapes),
                            show(&shapes)
                        )));
                    }
                    nodes.iter().find(|m| m.layer == n.layer).expect("built at an earlier node").shape.clone()
                }
                None => {
                    let (tensors0, values0) = (params.tensors.len(), params.len());
                    let (op, out) = lspec.build(&shapes, params, seed)?;
                    params.check()?;
                    checked_width(&out, || format!("the output of layer '{}'", lspec.name()))?;
                    layers[n.layer] = Some(GraphLayer {
                        name: lspec.name().to_string(),
                        op,
                        input_shapes: shapes,
                        tensors: tensors0..params.tensors.len(),
                        values: values0..params.len(),
                        frozen: false,
                    });
                    out
                }
            };
            nodes.push(Node { layer: n.layer, inputs: n.inputs.clone(), shape });
        }
        for &r in &spec.outputs {
            shape_of(spec, &nodes, r).ok_or_else(|| invalid(format!("output {r:?} is not a tensor of the model")))?;
        }
        let layers = layers
            .into_iter()
            .zip(&spec.layers)
            .map(|(l, s)| {
                l.ok_or_else(|| invalid(format!("layer '{}' is listed but never called in the graph", s.name())))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut uses = vec![0usize; layers.len()];
        nodes.iter().for_each(|n| uses[n.layer] += 1);
        let max_shared_values =
            layers.iter().zip(&uses).filter(|(_, &u)| u > 1).map(|(l, _)| l.values.len()).max().unwrap_or(0);
        let max_width = spec.inputs.iter().map(|i| width(&i.shape)).chain(nodes.iter().map(|n| width(&n.shape))).max();
        let (inference_buffer, inference_widths) = inference_buffers(&nodes, &spec.outputs);
        let mut g = Self {
            inputs: spec.inputs.clone(),
            layers,
            nodes,
            outputs: spec.outputs.clone(),
            needs_grad: Vec::new(),
            input_grads,
            max_width: max_width.unwrap_or(0),
            max_shared_values,
            inference_buffer,
            inference_widths,
        };
        g.refresh_needs_grad(params);
        Ok(g)
    }

    /// Per-sample output shape of `layer` called on tensors of `input_shapes` (`None`: a size
    /// known only per call): the engine's shape inference, for symbolic calls. Builds the layer
    /// into a throw-away store; with unknown dimensions, at two sizes for them, so an output
    /// dimension that differs is unknown too, and weights that differ are an error (a weight's
    /// shape cannot depend on the data).
    pub fn layer_output_shape(layer: &LayerSpec, input_shapes: &[Vec<Option<usize>>]) -> Result<Vec<Option<usize>>> {
        if input_shapes.iter().any(|s| s.is_empty() || s.contains(&Some(0))) {
            return Err(invalid(format!(
                "layer '{}': input shapes must be positive; got {}",
                layer.name(),
                input_shapes.iter().map(|s| show_declared(s)).collect::<Vec<_>>().join(", ")
            )));
        }
        let at = |size: usize| -> Result<(Vec<usize>, Vec<Vec<usize>>)> {
            let shapes: Vec<Vec<usize>> =
                input_shapes.iter().map(|s| s.iter().map(|d| d.unwrap_or(size)).collect()).collect();
            for s in &shapes {
                checked_width(s, || format!("an input of layer '{}'", layer.name()))?;
            }
            // A dry store: shapes only, no weight is allocated.
            let mut params = ParamStore::dry();
            let (_, out) = layer.build(&shapes, &mut params, 0)?;
            checked_width(&out, || format!("the output of layer '{}'", layer.name()))?;
            Ok((out, params.tensors.into_iter().map(|t| t.shape).collect()))
        };
        let (out, weights) = at(UNKNOWN_DIM)?;
        if input_shapes.iter().flatten().all(Option::is_some) {
            return Ok(out.into_iter().map(Some).collect());
        }
        let (probe, probe_weights) = at(UNKNOWN_DIM_PROBE)?;
        if weights != probe_weights || out.len() != probe.len() {
            return Err(invalid(format!(
                "layer '{}': its weights would depend on a dimension that is None in its input {}; give that \
                 dimension a size in keras.Input (or pool it away first)",
                layer.name(),
                input_shapes.iter().map(|s| show_declared(s)).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(out.iter().zip(&probe).map(|(&a, &b)| (a == b).then_some(a)).collect())
    }

    /// Freezes (or unfreezes) the layers whose flags are `true` (index = layer), marking their
    /// tensors in `params` and recomputing which nodes backward must reach.
    pub fn set_frozen(&mut self, frozen: &[bool], params: &mut ParamStore) -> Result<()> {
        if frozen.len() != self.layers.len() {
            return Err(invalid(format!(
                "set_frozen: the model has {} layers; got {} flags",
                self.layers.len(),
                frozen.len()
            )));
        }
        for (l, &f) in self.layers.iter_mut().zip(frozen) {
            l.frozen = f;
            params.tensors[l.tensors.clone()].iter_mut().for_each(|t| t.trainable = !f);
        }
        self.refresh_needs_grad(params);
        Ok(())
    }

    fn refresh_needs_grad(&mut self, params: &ParamStore) {
        let mut needs = vec![false; self.nodes.len()];
        for (j, n) in self.nodes.iter().enumerate() {
            needs[j] = self.layers[n.layer].has_trainable_weights(params)
                || n.inputs.iter().any(|r| match *r {
                    TensorRef::Node(i) => needs[i],
                    TensorRef::Input(_) => self.input_grads,
                });
        }
        self.needs_grad = needs;
    }

    /// Per-sample shape of a tensor.
    pub fn shape(&self, r: TensorRef) -> &[usize] {
        match r {
            TensorRef::Input(k) => &self.inputs[k].shape,
            TensorRef::Node(j) => &self.nodes[j].shape,
        }
    }

    /// The layer whose last activation produces tensor `r` (what a loss may fuse with), when no
    /// other node reads that tensor.
    pub fn fusable_activation(&self, r: TensorRef) -> Option<crate::activation::Activation> {
        let TensorRef::Node(j) = r else { return None };
        let read_elsewhere =
            self.nodes.iter().any(|n| n.inputs.contains(&r)) || self.outputs.iter().filter(|&&o| o == r).count() > 1;
        match (&self.layers[self.nodes[j].layer].op, read_elsewhere) {
            (Op::Unary(l), false) => Some(l.final_activation()),
            _ => None,
        }
    }

    /// Makes sure `ws` holds buffers for training passes (forward and backward) of `rows`
    /// samples.
    pub fn prepare(&self, ws: &mut GraphWorkspace, rows: usize) {
        if let Err(e) = self.try_prepare(ws, rows) {
            panic!("{e}");
        }
    }

    /// [`Graph::prepare`], failing (with nothing changed) when the sizes overflow or the memory
    /// cannot be had; callers run it before a pass so that the pass itself never allocates.
    pub fn try_prepare(&self, ws: &mut GraphWorkspace, rows: usize) -> Result<()> {
        self.try_prepare_for(ws, rows, true)
    }

    /// Makes sure `ws` holds buffers for inference passes ([`Graph::infer`]) of `rows` samples:
    /// the tensors and each layer's forward scratch, without the gradients and what only
    /// backward reads. A workspace prepared for training serves inference as it is.
    pub fn try_prepare_inference(&self, ws: &mut GraphWorkspace, rows: usize) -> Result<()> {
        self.try_prepare_for(ws, rows, false)
    }

    fn try_prepare_for(&self, ws: &mut GraphWorkspace, rows: usize, keep: bool) -> Result<()> {
        let same_shapes = ws.input_shapes.len() == self.inputs.len()
            && ws.input_shapes.iter().zip(&self.inputs).all(|(s, i)| *s == i.shape);
        if ws.capacity >= rows && ws.saved.len() == self.nodes.len() && same_shapes && (ws.keeps || !keep) {
            return Ok(());
        }
        let per_node = |n: &Node| match &self.layers[n.layer].op {
            Op::Unary(l) if keep => rows.checked_mul(l.saved_width()).and_then(|v| v.checked_add(l.saved_extra())),
            Op::Unary(l) => rows.checked_mul(l.inference_width()).and_then(|v| v.checked_add(l.inference_extra())),
            Op::Merge(_) => Some(0),
        };
        // Training keeps every node's output for backward; inference only until it is read.
        let widths: Vec<usize> =
            if keep { self.nodes.iter().map(|n| width(&n.shape)).collect() } else { self.inference_widths.clone() };
        let outputs = widths.iter().map(|&w| rows.checked_mul(w)).collect::<Option<Vec<_>>>();
        let saved = self.nodes.iter().map(per_node).collect::<Option<Vec<_>>>();
        let (Some(outputs), Some(saved), Some(scratch)) = (outputs, saved, rows.checked_mul(self.max_width)) else {
            return Err(invalid(format!("a batch of {rows} samples is too large for this model's buffers")));
        };
        let what = format!("the activations of a batch of {rows} samples (use a smaller batch_size)");
        let zeroed = |n: usize| crate::alloc::filled(n, 0.0f32, &what);
        let zeroed_all = |sizes: &[usize]| sizes.iter().map(|&n| zeroed(n)).collect::<Result<Vec<_>>>();
        // Every buffer is had before `ws` changes. Inference needs no tensor gradients.
        let grad_sizes = if keep { outputs.clone() } else { vec![0; self.nodes.len()] };
        let (new_outputs, new_grads, new_saved) =
            (zeroed_all(&outputs)?, zeroed_all(&grad_sizes)?, zeroed_all(&saved)?);
        let new_scratch = zeroed(if keep { scratch } else { 0 })?;
        ws.keeps = keep;
        ws.outputs = new_outputs;
        ws.grads = new_grads;
        ws.saved = new_saved;
        ws.nested = self
            .nodes
            .iter()
            .map(|n| match &self.layers[n.layer].op {
                Op::Unary(l) => l.nested_workspaces(rows),
                Op::Merge(_) => Vec::new(),
            })
            .collect();
        ws.written = vec![false; self.nodes.len()];
        ws.layer_done = vec![false; self.layers.len()];
        ws.scratch = new_scratch;
        ws.stash = vec![0.0; if keep { self.max_shared_values } else { 0 }];
        let input_rows = if self.input_grads && keep { rows } else { 0 };
        ws.input_grads = self.inputs.iter().map(|i| vec![0.0; input_rows * width(&i.shape)]).collect();
        ws.input_written = vec![false; self.inputs.len()];
        ws.input_shapes = self.inputs.iter().map(|i| i.shape.clone()).collect();
        ws.capacity = rows;
        Ok(())
    }

    /// The values of tensor `r` after [`Graph::forward`] (`rows` samples), or after
    /// [`Graph::infer`] when `r` is an input or an output of the graph.
    pub fn tensor<'a>(&self, ws: &'a GraphWorkspace, feeds: &[&'a [f32]], r: TensorRef, rows: usize) -> &'a [f32] {
        let n = rows * width(self.shape(r));
        match r {
            TensorRef::Input(k) => &feeds[k][..n],
            TensorRef::Node(j) => &ws.outputs[self.buffer_of(ws, j)][..n],
        }
    }

    /// Which of `ws.outputs` holds node `j`'s output.
    fn buffer_of(&self, ws: &GraphWorkspace, j: usize) -> usize {
        if ws.keeps {
            j
        } else {
            self.inference_buffer[j]
        }
    }

    /// Forward pass of `rows` samples, keeping what [`Graph::backward`] reads; `feeds[k]` holds
    /// input `k`. `training` picks the layers' behaviour (dropout, batch statistics).
    pub fn forward(
        &self,
        params: &mut [f32],
        ws: &mut GraphWorkspace,
        feeds: &[&[f32]],
        rows: usize,
        training: bool,
        rng: &mut Stream,
    ) {
        self.prepare(ws, rows);
        self.run_forward(params, ws, feeds, rows, Pass { training, keep: true, rng });
    }

    /// Inference pass of `rows` samples: layers in inference mode, nothing kept for backward
    /// (no saved activations, pooling winners or tensor gradients). On a workspace prepared by
    /// [`Graph::try_prepare_inference`] (or for training).
    pub fn infer(&self, params: &mut [f32], ws: &mut GraphWorkspace, feeds: &[&[f32]], rows: usize) {
        if let Err(e) = self.try_prepare_inference(ws, rows) {
            panic!("{e}");
        }
        // Inference draws no noise; the stream only completes the layers' signature.
        let mut rng = Stream::new(0, 0);
        self.run_forward(params, ws, feeds, rows, Pass { training: false, keep: false, rng: &mut rng });
    }

    fn run_forward(&self, params: &mut [f32], ws: &mut GraphWorkspace, feeds: &[&[f32]], rows: usize, pass: Pass<'_>) {
        let Pass { training, keep, rng } = pass;
        for (j, node) in self.nodes.iter().enumerate() {
            // The output buffer is taken out while the layer runs (an inference pass may have
            // any buffer below or above it); taking a `Vec` out allocates nothing.
            let at = self.buffer_of(ws, j);
            let mut output = std::mem::take(&mut ws.outputs[at]);
            let outputs = &ws.outputs;
            let get = |r: &TensorRef| -> &[f32] {
                match *r {
                    TensorRef::Input(k) => feeds[k],
                    TensorRef::Node(i) => &outputs[self.buffer_of(ws, i)],
                }
            };
            let layer = &self.layers[node.layer];
            match &layer.op {
                Op::Unary(l) => l.forward(ForwardPass {
                    params: &mut *params,
                    input: get(&node.inputs[0]),
                    output: &mut output,
                    saved: &mut ws.saved[j],
                    nested: &mut ws.nested[j],
                    rows,
                    training: training && !(layer.frozen && layer.uses_batch_statistics()),
                    keep,
                    rng: &mut *rng,
                }),
                Op::Merge(m) => {
                    let inputs: SmallVec<[&[f32]; 4]> = node.inputs.iter().map(get).collect();
                    m.forward(&inputs, &mut output, rows);
                }
            }
            ws.outputs[at] = output;
        }
    }

    /// Starts a backward pass: no tensor gradient holds a value yet.
    pub fn begin_backward(&self, ws: &mut GraphWorkspace) {
        ws.written.iter_mut().for_each(|w| *w = false);
        ws.layer_done.iter_mut().for_each(|w| *w = false);
        ws.input_written.iter_mut().for_each(|w| *w = false);
    }

    /// The values of output tensor `r` and where its loss writes `dL/d(output)`: the tensor's
    /// gradient buffer when it holds nothing yet (flag `false`), else the scratch buffer, to be
    /// added with [`Graph::add_output_grad`] (flag `true`). No gradient for an output that is
    /// a model input.
    #[allow(clippy::type_complexity)]
    pub fn output_and_grad<'a>(
        &self,
        ws: &'a mut GraphWorkspace,
        feeds: &[&'a [f32]],
        r: TensorRef,
        rows: usize,
    ) -> (&'a [f32], Option<(&'a mut [f32], bool)>) {
        let n = rows * width(self.shape(r));
        let j = match r {
            TensorRef::Input(k) => return (&feeds[k][..n], None),
            TensorRef::Node(j) => j,
        };
        let GraphWorkspace { outputs, grads, written, scratch, .. } = ws;
        let grad = if written[j] {
            (&mut scratch[..], true)
        } else {
            written[j] = true;
            (&mut grads[j][..], false)
        };
        (&outputs[j][..n], Some(grad))
    }

    /// Adds the scratch buffer (`rows` samples) into the gradient of output `r`.
    pub fn add_output_grad(&self, ws: &mut GraphWorkspace, r: TensorRef, rows: usize) {
        if let TensorRef::Node(j) = r {
            let n = rows * width(&self.nodes[j].shape);
            ws.grads[j][..n].iter_mut().zip(&ws.scratch[..n]).for_each(|(g, s)| *g += s);
        }
    }

    /// `dL/d(input k)` after [`Graph::backward`] of a nested graph (`rows` samples); `None` when
    /// no path from the losses reached the input.
    pub fn input_grad<'a>(&self, ws: &'a GraphWorkspace, k: usize, rows: usize) -> Option<&'a [f32]> {
        let written = self.input_grads && ws.input_written[k];
        written.then(|| &ws.input_grads[k][..rows * width(&self.inputs[k].shape)])
    }

    /// Backward pass after [`Graph::forward`] on the same feeds, once the losses have written
    /// the output gradients. `fused[j]`: node `j`'s gradient is `dL/dz` of its last activation
    /// (fused softmax + cross entropy). Fills `grads` with every weight's gradient (zero for
    /// layers no loss reached).
    pub fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        ws: &mut GraphWorkspace,
        feeds: &[&[f32]],
        rows: usize,
        fused: &[bool],
        training: bool,
    ) {
        assert!(ws.keeps, "backward on a workspace prepared for inference only");
        let GraphWorkspace {
            outputs,
            grads: tgrads,
            saved,
            nested,
            written,
            layer_done,
            scratch,
            stash,
            input_grads,
            input_written,
            ..
        } = ws;
        for j in (0..self.nodes.len()).rev() {
            if !written[j] || !self.needs_grad[j] {
                continue;
            }
            let node = &self.nodes[j];
            let layer = &self.layers[node.layer];
            let vals = layer.values.clone();
            let shared_again = layer_done[node.layer] && !vals.is_empty();
            if shared_again {
                stash[..vals.len()].copy_from_slice(&grads[vals.clone()]);
            }
            let (below, rest) = tgrads.split_at_mut(j);
            let value_of = |r: &TensorRef| -> &[f32] {
                match *r {
                    TensorRef::Input(k) => feeds[k],
                    TensorRef::Node(i) => &outputs[i],
                }
            };
            // Where dL/d(input) goes: straight into the tensor's gradient when this is its first
            // contribution, else into the scratch and then added. Tensors with nothing trainable
            // above them need none, nor do model inputs unless the graph reports their gradient.
            let mut sinks = Sinks { below, inputs: input_grads, written, input_written, scratch };
            let sink_of = |r: &TensorRef| -> Option<TensorRef> {
                match *r {
                    TensorRef::Node(i) if self.needs_grad[i] => Some(*r),
                    TensorRef::Input(_) if self.input_grads => Some(*r),
                    _ => None,
                }
            };
            match &layer.op {
                Op::Unary(l) => {
                    let sink = sink_of(&node.inputs[0]);
                    l.backward(BackwardPass {
                        params,
                        grads: &mut *grads,
                        input: value_of(&node.inputs[0]),
                        output: &outputs[j],
                        saved: &mut saved[j],
                        grad_out: &mut rest[0],
                        grad_in: sink.map(|r| sinks.target(r)),
                        nested: &mut nested[j],
                        rows,
                        skip_activation: fused[j],
                        training: training && !(layer.frozen && layer.uses_batch_statistics()),
                    });
                    if let Some(r) = sink {
                        sinks.commit(r, rows * width(self.shape(r)));
                    }
                }
                Op::Merge(m) => {
                    let inputs: SmallVec<[&[f32]; 4]> = node.inputs.iter().map(value_of).collect();
                    for (k, r) in node.inputs.iter().enumerate() {
                        let Some(r) = sink_of(r) else { continue };
                        m.backward_input(k, &inputs, &outputs[j], &rest[0], sinks.target(r), rows);
                        sinks.commit(r, rows * width(self.shape(r)));
                    }
                }
            }
            if shared_again {
                grads[vals.clone()].iter_mut().zip(&stash[..vals.len()]).for_each(|(g, s)| *g += s);
            }
            layer_done[node.layer] = true;
        }
        // Layers no loss reached this step (a branch to an output without a loss) get a zero
        // gradient rather than a stale one.
        for (l, &done) in self.layers.iter().zip(layer_done.iter()) {
            if !done {
                grads[l.values.clone()].fill(0.0);
            }
        }
    }
}

/// The gradient buffers of the tensors a node's backward writes into: earlier nodes' outputs and
/// the graph's inputs, with the flags saying which already hold a contribution.
struct Sinks<'a> {
    below: &'a mut [Vec<f32>],
    inputs: &'a mut [Vec<f32>],
    written: &'a mut [bool],
    input_written: &'a mut [bool],
    scratch: &'a mut [f32],
}

impl Sinks<'_> {
    /// Where the gradient for `r` is written: its buffer on the first contribution, else the
    /// scratch.
    fn target(&mut self, r: TensorRef) -> &mut [f32] {
        let again = match r {
            TensorRef::Node(i) => self.written[i],
            TensorRef::Input(k) => self.input_written[k],
        };
        match r {
            _ if again => &mut *self.scratch,
            TensorRef::Node(i) => &mut self.below[i],
            TensorRef::Input(k) => &mut self.inputs[k],
        }
    }

    /// After a write to [`Sinks::target`]: adds the scratch when it was used (`n` values).
    fn commit(&mut self, r: TensorRef, n: usize) {
        let scratch: &[f32] = self.scratch;
        let (buf, again) = match r {
            TensorRef::Node(i) => (&mut self.below[i], &mut self.written[i]),
            TensorRef::Input(k) => (&mut self.inputs[k], &mut self.input_written[k]),
        };
        if *again {
            buf[..n].iter_mut().zip(&scratch[..n]).for_each(|(g, s)| *g += s);
        }
        *again = true;
    }
}

/// Values per sample of `shape`, refused when they overflow what a buffer can hold (`what`
/// names the tensor).
fn checked_width(shape: &[usize], what: impl Fn() -> String) -> Result<usize> {
    crate::params::checked_len(shape)
        .ok_or_else(|| invalid(format!("{} has shape {shape:?}: too many values per sample", what())))
}

fn shape_of(spec: &GraphSpec, nodes: &[Node], r: TensorRef) -> Option<Vec<usize>> {
    match r {
        TensorRef::Input(k) => spec.inputs.get(k).map(|i| i.shape.clone()),
        TensorRef::Node(j) => nodes.get(j).map(|n| n.shape.clone()),
    }
}

fn show(shapes: &[Vec<usize>]) -> String {
    let one = |s: &Vec<usize>| {
        let dims: Vec<String> = std::iter::once("None".to_string()).chain(s.iter().map(|d| d.to_string())).collect();
        format!("({})", dims.join(", "))
    };
    shapes.iter().map(one).collect::<Vec<_>>().join(", ")
}
