//! The layer contract's description side: a [`LayerSpec`] is a layer's name plus its
//! configuration, which is exactly the `get_config()` of its Python class with a `type` key.
//!
//! Each layer's file declares its configuration struct (serde gives the Keras defaults, unknown
//! keys such as `trainable` or `dtype` are ignored) and implements [`BuildLayer`] for it:
//! `validate` checks the arguments alone, once, when the spec reaches the engine; `build` makes
//! the layer for given input shapes. The registry (`registry.rs`) ties each `type` to its
//! struct.

use serde::{Deserialize, Serialize};

use super::{LayerConfig, Op};
use crate::activation::Activation;
use crate::error::{invalid, Result};
use crate::init::Initializer;
use crate::params::ParamStore;
use crate::regularizer::Regularizer;
use crate::rng::Stream;

/// A layer as the Python side sends it and a saved model stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Unique within a model; weights are named `<name>/<weight>`.
    pub name: String,
    #[serde(flatten)]
    pub config: LayerConfig,
}

impl LayerSpec {
    pub fn new(name: impl Into<String>, config: impl Into<LayerConfig>) -> Self {
        Self { name: name.into(), config: config.into() }
    }

    /// The layer's name (unique within a model).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the arguments, without input shapes.
    pub fn validate(&self) -> Result<()> {
        self.config.as_builder().validate(&self.name)
    }

    /// Builds the layer for per-sample `input_shapes`, registering its weights in `params`;
    /// returns what it computes and its per-sample output shape.
    pub fn build(&self, input_shapes: &[Vec<usize>], params: &mut ParamStore, seed: u64) -> Result<(Op, Vec<usize>)> {
        self.validate()?;
        let mut ctx = BuildContext { name: &self.name, params, seed };
        self.config.as_builder().build(&mut ctx, input_shapes)
    }
}

/// What a layer's configuration does: checks itself, and builds the layer.
pub trait BuildLayer {
    /// Checks the arguments alone (ranges, combinations), before any shape is known.
    fn validate(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Builds the layer for per-sample `inputs` shapes: registers its weights through `ctx` and
    /// returns what it computes with its per-sample output shape.
    fn build(&self, ctx: &mut BuildContext<'_>, inputs: &[Vec<usize>]) -> Result<(Op, Vec<usize>)>;
}

/// What building one layer may use besides its configuration.
pub struct BuildContext<'a> {
    /// The layer's name, for weight names and error messages.
    pub name: &'a str,
    pub params: &'a mut ParamStore,
    /// The model's seed, for initializers without a seed of their own.
    pub seed: u64,
}

impl BuildContext<'_> {
    /// The input shape of a layer that takes one input.
    pub fn one_input<'s>(&self, inputs: &'s [Vec<usize>]) -> Result<&'s [usize]> {
        match inputs {
            [shape] => Ok(shape),
            _ => Err(invalid(format!(
                "layer '{}' takes one input; it was called on {} tensors",
                self.name,
                inputs.len()
            ))),
        }
    }

    /// Fills weight tensor `index` with `init` and attaches its regularizer.
    pub fn init_weight(&mut self, index: usize, init: &InitSpec, regularizer: Option<Regularizer>) {
        init.fill(self.params, index, self.seed);
        self.params.tensors[index].regularizer = regularizer;
    }
}

/// The arguments Dense and Conv2D share: activation, bias, initializers and regularizers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelArgs {
    #[serde(default, deserialize_with = "crate::activation::name_or_spec")]
    pub activation: Activation,
    #[serde(default = "defaults::yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub kernel_initializer: InitSpec,
    #[serde(default = "InitSpec::zeros")]
    pub bias_initializer: InitSpec,
    #[serde(default, deserialize_with = "crate::regularizer::keras_or_engine")]
    pub kernel_regularizer: Option<Regularizer>,
    #[serde(default, deserialize_with = "crate::regularizer::keras_or_engine")]
    pub bias_regularizer: Option<Regularizer>,
}

impl KernelArgs {
    /// `activation` with Keras' defaults for the rest.
    pub fn new(activation: Activation) -> Self {
        Self {
            activation,
            use_bias: true,
            kernel_initializer: InitSpec::default(),
            bias_initializer: InitSpec::zeros(),
            kernel_regularizer: None,
            bias_regularizer: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        validate_regularizer(&self.kernel_regularizer)?;
        validate_regularizer(&self.bias_regularizer)
    }

    /// Fills the kernel and the bias (when there is one) registered by the built layer.
    pub fn init(&self, ctx: &mut BuildContext<'_>, kernel: usize, bias: Option<usize>) {
        ctx.init_weight(kernel, &self.kernel_initializer, self.kernel_regularizer);
        if let Some(b) = bias {
            ctx.init_weight(b, &self.bias_initializer, self.bias_regularizer);
        }
    }
}

/// A layer's dtype policy (`keras.mixed_precision.DTypePolicy`), by name: weights are f32 under
/// both; `mixed_bfloat16` runs the layer's matrix products on bf16 operands with f32 sums, where
/// the CPU has bf16 instructions (f32 elsewhere).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DTypePolicy {
    #[default]
    #[serde(rename = "float32")]
    Float32,
    #[serde(rename = "mixed_bfloat16")]
    MixedBfloat16,
}

/// Checks an optional regularizer argument.
pub fn validate_regularizer(r: &Option<Regularizer>) -> Result<()> {
    r.as_ref().map_or(Ok(()), Regularizer::validate)
}

/// An initializer with an optional seed of its own (else the model seed is used).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct InitSpec {
    #[serde(flatten)]
    pub init: Initializer,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl InitSpec {
    pub fn zeros() -> Self {
        Self { init: Initializer::Zeros, seed: None }
    }

    pub fn constant(value: f32) -> Self {
        Self { init: Initializer::Constant { value }, seed: None }
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
        // A tensor without storage (see `ParamStore::register`) is not filled.
        if let Some(values) = params.values.get_mut(range) {
            self.init.fill(values, &shape, &mut rng);
        }
    }
}

/// Convolution and pooling padding (Keras names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    #[default]
    Valid,
    Same,
}

/// The channel axis argument of the normalization layers: only the last axis (`-1`) is
/// supported.
pub fn check_last_axis(layer: &str, name: &str, axis: i64) -> Result<()> {
    if axis == -1 {
        Ok(())
    } else {
        Err(invalid(format!("{layer} '{name}': only axis=-1 (the last, channel axis) is supported; got {axis}")))
    }
}

/// serde defaults shared by several configurations.
pub(crate) mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn ones2() -> [usize; 2] {
        [1, 1]
    }
    pub fn last_axis() -> i64 {
        -1
    }
    pub fn epsilon() -> f32 {
        1e-3
    }
}
