//! The engine's layers. Each layer lives in its own file with its whole contract:
//!
//! - its configuration struct (serde: the Keras arguments and defaults of its `get_config`),
//!   implementing [`BuildLayer`]: `validate` (arguments alone) and `build` (for input shapes:
//!   registers its weights, returns what it computes and its output shape);
//! - the built layer, implementing [`LayerKernel`]: `forward` reads the input buffer and writes
//!   its output buffer, keeping in its `saved` scratch what backward reads unless the pass is
//!   inference only (`keep` false: `predict` and `evaluate` keep nothing); `backward` receives
//!   `dL/d(out)` in a buffer it may overwrite, writes its parameter gradients into the flat
//!   gradient store, and writes `dL/d(in)` when asked.
//!
//! `registry.rs` lists them; layers that take several inputs (merges) build an [`Op::Merge`].

mod activation;
mod augment;
mod batch_norm;
mod broadcast;
pub mod conv2d;
mod dense;
mod dropout;
pub mod merge;
mod normalization;
mod pool;
mod prelu;
mod preprocess;
mod registry;
mod reshape;
mod residual;
mod spec;
#[cfg(test)]
mod tests;

pub use activation::{ActivationConfig, ActivationLayer, LeakyReluConfig, ReluConfig, SoftmaxConfig};
pub use augment::{
    Augment, Factor, RandomFlipConfig, RandomRotationConfig, RandomTransform, RandomTranslationConfig, RandomZoomConfig,
};
pub use conv2d::{Conv2D, Conv2DConfig};
pub use dense::{Dense, DenseConfig};
pub use dropout::{DropoutConfig, GaussianNoiseConfig, Noise, NoiseKind, SpatialDropout2DConfig};
pub use merge::{
    AddConfig, AverageConfig, ConcatenateConfig, DotAxes, DotConfig, MaximumConfig, Merge, MergeKind, MinimumConfig,
    MultiplyConfig, SubtractConfig,
};
pub use normalization::{
    BatchNormalizationConfig, GroupNormalizationConfig, LayerNormalizationConfig, NormKind, Normalization,
};
pub use pool::{
    AveragePooling2DConfig, GlobalAveragePooling2DConfig, GlobalMaxPooling2DConfig, GlobalPool2D, MaxPooling2DConfig,
    Pool2D, PoolKind,
};
pub use prelu::{PRelu, PReluConfig};
pub use preprocess::{MinMaxNormalizationConfig, NormalizationConfig, RescalingConfig, Scale, ScaleKind};
pub use registry::{Layer, LayerConfig};
pub use reshape::{FlattenConfig, IdentityConfig, Reshape, ReshapeConfig};
pub use residual::{Residual, ResidualConfig};
pub use spec::{BuildContext, BuildLayer, DTypePolicy, InitSpec, LayerSpec, Padding};

use crate::activation::Activation;
use crate::graph::GraphWorkspace;
use crate::rng::Stream;

/// What a built layer computes: one input (a [`Layer`]) or several (a merge).
#[derive(Clone, Debug)]
pub enum Op {
    Unary(Layer),
    Merge(Merge),
}

impl Op {
    /// A one-input layer.
    pub fn unary(layer: impl Into<Layer>) -> Self {
        Op::Unary(layer.into())
    }
}

/// A built layer that runs on one input.
pub trait LayerKernel {
    fn forward(&self, p: ForwardPass<'_>);

    fn backward(&self, p: BackwardPass<'_>);

    /// Values per sample the layer keeps between forward and backward besides its output.
    fn saved_width(&self) -> usize {
        0
    }

    /// Scratch per batch beyond the per-sample part (e.g. per-channel statistics).
    fn saved_extra(&self) -> usize {
        0
    }

    /// Values per sample an inference forward pass (`keep` false) needs in `saved` as scratch;
    /// at most [`LayerKernel::saved_width`], since a workspace sized for training serves
    /// inference too.
    fn inference_width(&self) -> usize {
        0
    }

    /// Scratch per batch of an inference forward pass; at most [`LayerKernel::saved_extra`].
    fn inference_extra(&self) -> usize {
        0
    }

    /// Workspaces for the graphs nested in this layer (residual branches).
    fn nested_workspaces(&self, _rows: usize) -> Vec<GraphWorkspace> {
        Vec::new()
    }

    /// The activation applied last by this layer, which a loss may fuse with.
    fn final_activation(&self) -> Activation {
        Activation::Linear
    }

    /// Whether its training behaviour uses batch statistics (what freezing turns off: a frozen
    /// BatchNormalization runs in inference mode).
    fn uses_batch_statistics(&self) -> bool {
        false
    }
}

/// Everything `forward` of one layer reads and writes.
pub struct ForwardPass<'a> {
    /// Every parameter of the network; training-mode forward may update non-trainable ones
    /// (BatchNormalization's moving statistics).
    pub params: &'a mut [f32],
    pub input: &'a [f32],
    pub output: &'a mut [f32],
    /// Per-layer scratch kept for backward (see [`LayerKernel::saved_width`]); in an inference
    /// pass only [`LayerKernel::inference_width`] and [`LayerKernel::inference_extra`] long.
    pub saved: &'a mut [f32],
    pub rows: usize,
    /// Training behaviour (dropout, noise, batch statistics) or inference behaviour.
    pub training: bool,
    /// A backward pass follows: keep in `saved` what it reads. False only in inference
    /// (`predict`, `evaluate`), where `training` is false too and nothing is kept.
    pub keep: bool,
    /// Random stream for dropout masks and noise.
    pub rng: &'a mut Stream,
    /// Workspaces of the chains nested in this layer (residual branches).
    pub nested: &'a mut Vec<GraphWorkspace>,
}

/// Everything `backward` of one layer reads and writes.
pub struct BackwardPass<'a> {
    pub params: &'a [f32],
    pub grads: &'a mut [f32],
    pub input: &'a [f32],
    pub output: &'a [f32],
    /// What forward kept besides the output (e.g. Dense's pre-activation); the layer may reuse
    /// it as scratch during backward. May be empty.
    pub saved: &'a mut [f32],
    /// `dL/d(out)` on entry; the layer may overwrite it.
    pub grad_out: &'a mut [f32],
    /// Where `dL/d(in)` goes; `None` for the first layer (nobody needs it).
    pub grad_in: Option<&'a mut [f32]>,
    /// Workspaces of the chains nested in this layer (residual branches).
    pub nested: &'a mut Vec<GraphWorkspace>,
    pub rows: usize,
    /// The loss already produced `dL/dz` for this layer's activation (fused softmax + CE).
    pub skip_activation: bool,
    /// The mode forward ran in (a frozen BatchNormalization runs in inference mode in `fit`).
    pub training: bool,
}
