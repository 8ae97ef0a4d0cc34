//! Layers of a sequential network. Each concrete layer lives in its own file; [`Layer`] is the
//! closed set of them (an enum, so calls are statically dispatched in the hot loop).
//!
//! The contract of a layer: `build` registers its parameters and returns its output shape;
//! `forward` reads the input buffer and writes its output buffer; `backward` receives `dL/d(out)`
//! in a buffer it may overwrite, accumulates its parameter gradients into the flat gradient
//! store, and writes `dL/d(in)` when the layer below needs it.

mod activation;
mod dense;

pub use activation::ActivationLayer;
pub use dense::Dense;

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::Result;
use crate::init::Initializer;
use crate::params::ParamStore;
use crate::rng::Stream;

/// The description of a layer, as the Python side sends it and as a saved model stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    Dense {
        name: String,
        units: usize,
        #[serde(default)]
        activation: Activation,
        #[serde(default = "yes")]
        use_bias: bool,
        #[serde(default)]
        kernel_initializer: Initializer,
        #[serde(default = "zeros")]
        bias_initializer: Initializer,
    },
    Activation {
        name: String,
        activation: Activation,
    },
}

fn yes() -> bool {
    true
}

fn zeros() -> Initializer {
    Initializer::Zeros
}

/// Everything `backward` of one layer reads and writes.
pub struct BackwardPass<'a> {
    pub params: &'a [f32],
    pub grads: &'a mut [f32],
    pub input: &'a [f32],
    pub output: &'a [f32],
    /// `dL/d(out)` on entry; the layer may overwrite it.
    pub grad_out: &'a mut [f32],
    /// Where `dL/d(in)` goes; `None` for the first layer (nobody needs it).
    pub grad_in: Option<&'a mut [f32]>,
    pub rows: usize,
    /// The loss already produced `dL/dz` for this layer's activation (fused softmax + CE).
    pub skip_activation: bool,
}

/// A built layer.
#[derive(Clone, Debug)]
pub enum Layer {
    Dense(Dense),
    Activation(ActivationLayer),
}

impl Layer {
    /// Builds a layer for per-sample `input_shape`; returns it with its per-sample output shape.
    pub fn build(
        spec: &LayerSpec,
        input_shape: &[usize],
        params: &mut ParamStore,
        seed: u64,
    ) -> Result<(Layer, Vec<usize>)> {
        match spec {
            LayerSpec::Dense {
                name,
                units,
                activation,
                use_bias,
                kernel_initializer,
                bias_initializer,
            } => {
                let d = Dense::build(name, input_shape, *units, *activation, *use_bias, params)?;
                let kernel = &params.tensors[d.kernel];
                let mut rng = Stream::new(seed, d.kernel as u64);
                let range = kernel.range();
                kernel_initializer.fill(&mut params.values[range], d.in_dim, d.units, &mut rng);
                if let Some(b) = d.bias {
                    let range = params.tensors[b].range();
                    let mut rng = Stream::new(seed, b as u64);
                    bias_initializer.fill(&mut params.values[range], d.in_dim, d.units, &mut rng);
                }
                let shape = vec![d.units];
                Ok((Layer::Dense(d), shape))
            }
            LayerSpec::Activation { activation, .. } => {
                let layer = ActivationLayer {
                    activation: *activation,
                    per_sample: input_shape.iter().product(),
                    last_axis: input_shape.last().copied().unwrap_or(1),
                };
                Ok((Layer::Activation(layer), input_shape.to_vec()))
            }
        }
    }

    pub fn forward(&self, params: &[f32], input: &[f32], output: &mut [f32], rows: usize) {
        match self {
            Layer::Dense(l) => l.forward(params, input, output, rows),
            Layer::Activation(l) => l.forward(input, output, rows),
        }
    }

    pub fn backward(&self, pass: BackwardPass<'_>) {
        match self {
            Layer::Dense(l) => l.backward(pass),
            Layer::Activation(l) => l.backward(pass),
        }
    }

    /// The activation applied last by this layer, which a loss may fuse with.
    pub fn final_activation(&self) -> Activation {
        match self {
            Layer::Dense(l) => l.activation,
            Layer::Activation(l) => l.activation,
        }
    }
}
