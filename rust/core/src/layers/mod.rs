//! Layers of a sequential network. Each concrete layer lives in its own file; [`Layer`] is the
//! closed set of them (an enum, so calls are statically dispatched in the hot loop).
//!
//! The contract of a layer: `build` registers its parameters and returns its output shape;
//! `forward` reads the input buffer and writes its output buffer; `backward` receives `dL/d(out)`
//! in a buffer it may overwrite, accumulates its parameter gradients into the flat gradient
//! store, and writes `dL/d(in)` when the layer below needs it.

mod activation;
mod dense;
mod prelu;

pub use activation::ActivationLayer;
pub use dense::Dense;
pub use prelu::PRelu;

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::Result;
use crate::init::Initializer;
use crate::params::ParamStore;
use crate::regularizer::Regularizer;
use crate::rng::Stream;

/// An initializer with an optional seed of its own (else the model seed is used).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct InitSpec {
    #[serde(flatten)]
    pub init: Initializer,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl InitSpec {
    fn zeros() -> Self {
        Self { init: Initializer::Zeros, seed: None }
    }

    /// Fills tensor `index` of `params`.
    fn fill(&self, params: &mut ParamStore, index: usize, model_seed: u64) {
        let t = &params.tensors[index];
        // A seeded initializer draws the same values wherever it is used, as in Keras.
        let mut rng = match self.seed {
            Some(s) => Stream::new(s, 0),
            None => Stream::new(model_seed, index as u64),
        };
        let (range, shape) = (t.range(), t.shape.clone());
        self.init.fill(&mut params.values[range], &shape, &mut rng);
    }
}

fn set_regularizer(params: &mut ParamStore, index: usize, r: Option<Regularizer>) -> Result<()> {
    if let Some(r) = r {
        r.validate()?;
    }
    params.tensors[index].regularizer = r;
    Ok(())
}

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
        kernel_initializer: InitSpec,
        #[serde(default = "InitSpec::zeros")]
        bias_initializer: InitSpec,
        #[serde(default)]
        kernel_regularizer: Option<Regularizer>,
        #[serde(default)]
        bias_regularizer: Option<Regularizer>,
    },
    #[serde(rename = "prelu")]
    PRelu {
        name: String,
        #[serde(default = "quarter")]
        alpha_initializer: InitSpec,
        #[serde(default)]
        shared_axes: Vec<usize>,
        #[serde(default)]
        alpha_regularizer: Option<Regularizer>,
    },
    Activation {
        name: String,
        activation: Activation,
    },
}

fn yes() -> bool {
    true
}

fn quarter() -> InitSpec {
    InitSpec { init: Initializer::Constant { value: 0.25 }, seed: None }
}

/// Everything `backward` of one layer reads and writes.
pub struct BackwardPass<'a> {
    pub params: &'a [f32],
    pub grads: &'a mut [f32],
    pub input: &'a [f32],
    pub output: &'a [f32],
    /// What forward kept besides the output (e.g. Dense's pre-activation); may be empty.
    pub saved: &'a [f32],
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
    PRelu(PRelu),
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
                kernel_regularizer,
                bias_regularizer,
            } => {
                let d = Dense::build(name, input_shape, *units, *activation, *use_bias, params)?;
                kernel_initializer.fill(params, d.kernel, seed);
                set_regularizer(params, d.kernel, *kernel_regularizer)?;
                if let Some(b) = d.bias {
                    bias_initializer.fill(params, b, seed);
                    set_regularizer(params, b, *bias_regularizer)?;
                }
                let shape = vec![d.units];
                Ok((Layer::Dense(d), shape))
            }
            LayerSpec::PRelu { name, alpha_initializer, shared_axes, alpha_regularizer } => {
                let l = PRelu::build(name, input_shape, shared_axes, params)?;
                alpha_initializer.fill(params, l.alpha, seed);
                set_regularizer(params, l.alpha, *alpha_regularizer)?;
                Ok((Layer::PRelu(l), input_shape.to_vec()))
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

    /// Values per sample the layer keeps between forward and backward besides its output.
    pub fn saved_width(&self) -> usize {
        match self {
            Layer::Dense(l) => l.saved_width(),
            Layer::Activation(_) | Layer::PRelu(_) => 0,
        }
    }

    pub fn forward(&self, params: &[f32], input: &[f32], output: &mut [f32], saved: &mut [f32], rows: usize) {
        match self {
            Layer::Dense(l) => l.forward(params, input, output, saved, rows),
            Layer::Activation(l) => l.forward(input, output, rows),
            Layer::PRelu(l) => l.forward(params, input, output, rows),
        }
    }

    pub fn backward(&self, pass: BackwardPass<'_>) {
        match self {
            Layer::Dense(l) => l.backward(pass),
            Layer::Activation(l) => l.backward(pass),
            Layer::PRelu(l) => l.backward(pass),
        }
    }

    /// The activation applied last by this layer, which a loss may fuse with.
    pub fn final_activation(&self) -> Activation {
        match self {
            Layer::Dense(l) => l.activation,
            Layer::Activation(l) => l.activation,
            Layer::PRelu(_) => Activation::Linear,
        }
    }
}
