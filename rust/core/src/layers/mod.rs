//! Layers of a sequential network. Each concrete layer lives in its own file; [`Layer`] is the
//! closed set of them (an enum, so calls are statically dispatched in the hot loop).
//!
//! The contract of a layer: `build` registers its parameters and returns its output shape;
//! `forward` reads the input buffer and writes its output buffer; `backward` receives `dL/d(out)`
//! in a buffer it may overwrite, accumulates its parameter gradients into the flat gradient
//! store, and writes `dL/d(in)` when the layer below needs it.

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
mod reshape;
mod residual;
#[cfg(test)]
mod tests;

pub use activation::ActivationLayer;
pub use augment::{Augment, RandomTransform};
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use dropout::{Noise, NoiseKind};
pub use merge::{Merge, MergeKind};
pub use normalization::{NormKind, Normalization};
pub use pool::{GlobalPool2D, Pool2D, PoolKind};
pub use prelu::PRelu;
pub use preprocess::{Scale, ScaleKind};
pub use reshape::Reshape;
pub use residual::Residual;

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::Result;
use crate::graph::GraphWorkspace;
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
        // A tensor without storage (see `ParamStore::register`) is not filled.
        if let Some(values) = params.values.get_mut(range) {
            self.init.fill(values, &shape, &mut rng);
        }
    }
}

fn set_regularizer(params: &mut ParamStore, index: usize, r: Option<Regularizer>) -> Result<()> {
    if let Some(r) = r {
        r.validate()?;
    }
    params.tensors[index].regularizer = r;
    Ok(())
}

/// Declares [`LayerSpec`]: every variant gets the layer's `name` (unique within a model) as its
/// first field, and [`LayerSpec::name`] reads it whatever the variant.
macro_rules! layer_specs {
    ($($(#[$vmeta:meta])* $variant:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? }),* $(,)?) => {
        /// The description of a layer, as the Python side sends it and as a saved model stores it.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum LayerSpec {
            $($(#[$vmeta])* $variant { name: String, $($(#[$fmeta])* $field: $ty),* },)*
        }

        impl LayerSpec {
            /// The layer's name (unique within a model).
            pub fn name(&self) -> &str {
                match self {
                    $(LayerSpec::$variant { name, .. } => name,)*
                }
            }
        }
    };
}

layer_specs! {
    Dense {
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
    #[serde(rename = "conv2d")]
    Conv2D {
        filters: usize,
        kernel_size: [usize; 2],
        #[serde(default = "ones2")]
        strides: [usize; 2],
        #[serde(default)]
        padding: Padding,
        #[serde(default = "ones2")]
        dilation_rate: [usize; 2],
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
    #[serde(rename = "max_pooling2d")]
    MaxPooling2D {
        pool_size: [usize; 2],
        #[serde(default)]
        strides: Option<[usize; 2]>,
        #[serde(default)]
        padding: Padding,
    },
    #[serde(rename = "average_pooling2d")]
    AveragePooling2D {
        pool_size: [usize; 2],
        #[serde(default)]
        strides: Option<[usize; 2]>,
        #[serde(default)]
        padding: Padding,
    },
    #[serde(rename = "global_average_pooling2d")]
    GlobalAveragePooling2D {},
    #[serde(rename = "global_max_pooling2d")]
    GlobalMaxPooling2D {},
    Flatten {},
    Reshape {
        target_shape: Vec<i64>,
    },
    Dropout {
        rate: f32,
    },
    #[serde(rename = "spatial_dropout2d")]
    SpatialDropout2D {
        rate: f32,
    },
    GaussianNoise {
        stddev: f32,
    },
    BatchNormalization {
        #[serde(default = "bn_momentum")]
        momentum: f32,
        #[serde(default = "norm_epsilon")]
        epsilon: f32,
        #[serde(default = "yes")]
        center: bool,
        #[serde(default = "yes")]
        scale: bool,
    },
    GroupNormalization {
        #[serde(default = "thirty_two")]
        groups: usize,
        #[serde(default = "norm_epsilon")]
        epsilon: f32,
        #[serde(default = "yes")]
        center: bool,
        #[serde(default = "yes")]
        scale: bool,
    },
    LayerNormalization {
        #[serde(default = "norm_epsilon")]
        epsilon: f32,
        #[serde(default = "yes")]
        center: bool,
        #[serde(default = "yes")]
        scale: bool,
    },
    Rescaling {
        scale: f32,
        #[serde(default)]
        offset: f32,
    },
    Normalization {},
    MinMaxNormalization {},
    RandomTransform {
        #[serde(default)]
        flip_horizontal: bool,
        #[serde(default)]
        flip_vertical: bool,
        #[serde(default)]
        translate: [[f32; 2]; 2],
        #[serde(default)]
        rotate: [f32; 2],
        #[serde(default)]
        zoom: [[f32; 2]; 2],
        #[serde(default)]
        zoom_keeps_aspect: bool,
    },
    Residual {
        layers: Vec<LayerSpec>,
        #[serde(default)]
        shortcut: Option<Box<LayerSpec>>,
    },
    #[serde(rename = "prelu")]
    PRelu {
        #[serde(default = "quarter")]
        alpha_initializer: InitSpec,
        #[serde(default)]
        shared_axes: Vec<usize>,
        #[serde(default)]
        alpha_regularizer: Option<Regularizer>,
    },
    Activation {
        activation: Activation,
    },
    /// Passes its input through unchanged (Keras `Identity`).
    Identity {},
    Add {},
    Subtract {},
    Multiply {},
    Average {},
    Maximum {},
    Minimum {},
    Concatenate {
        #[serde(default = "last_axis")]
        axis: i64,
    },
    Dot {
        axes: [i64; 2],
        #[serde(default)]
        normalize: bool,
    }
}

fn last_axis() -> i64 {
    -1
}

impl LayerSpec {
    /// The merge this spec describes, for the layers that take a list of inputs.
    pub fn merge_kind(&self) -> Option<MergeKind> {
        Some(match *self {
            LayerSpec::Add { .. } => MergeKind::Add,
            LayerSpec::Subtract { .. } => MergeKind::Subtract,
            LayerSpec::Multiply { .. } => MergeKind::Multiply,
            LayerSpec::Average { .. } => MergeKind::Average,
            LayerSpec::Maximum { .. } => MergeKind::Maximum,
            LayerSpec::Minimum { .. } => MergeKind::Minimum,
            LayerSpec::Concatenate { axis, .. } => MergeKind::Concatenate { axis },
            LayerSpec::Dot { axes, normalize, .. } => MergeKind::Dot { axes, normalize },
            _ => return None,
        })
    }
}

fn yes() -> bool {
    true
}

/// Convolution and pooling padding (Keras names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    #[default]
    Valid,
    Same,
}

fn ones2() -> [usize; 2] {
    [1, 1]
}
fn thirty_two() -> usize {
    32
}
fn bn_momentum() -> f32 {
    0.99
}
fn norm_epsilon() -> f32 {
    1e-3
}

fn quarter() -> InitSpec {
    InitSpec { init: Initializer::Constant { value: 0.25 }, seed: None }
}

/// Everything `forward` of one layer reads and writes.
pub struct ForwardPass<'a> {
    /// Every parameter of the network; training-mode forward may update non-trainable ones
    /// (BatchNormalization's moving statistics).
    pub params: &'a mut [f32],
    pub input: &'a [f32],
    pub output: &'a mut [f32],
    /// Per-layer scratch kept for backward (see [`Layer::saved_width`]).
    pub saved: &'a mut [f32],
    pub rows: usize,
    /// Training behaviour (dropout, noise, batch statistics) or inference behaviour.
    pub training: bool,
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

/// A built layer.
#[derive(Clone, Debug)]
pub enum Layer {
    Dense(Dense),
    Activation(ActivationLayer),
    PRelu(PRelu),
    Conv2D(Conv2D),
    Pool(Pool2D),
    GlobalPool(GlobalPool2D),
    Reshape(Reshape),
    Noise(Noise),
    Norm(Normalization),
    Residual(Residual),
    Scale(Scale),
    Augment(RandomTransform),
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
            LayerSpec::Conv2D {
                name,
                filters,
                kernel_size,
                strides,
                padding,
                dilation_rate,
                activation,
                use_bias,
                kernel_initializer,
                bias_initializer,
                kernel_regularizer,
                bias_regularizer,
            } => {
                let same = *padding == Padding::Same;
                let l = Conv2D::build(
                    name,
                    input_shape,
                    *filters,
                    *kernel_size,
                    *strides,
                    *dilation_rate,
                    same,
                    *activation,
                    *use_bias,
                    params,
                )?;
                kernel_initializer.fill(params, l.kernel, seed);
                set_regularizer(params, l.kernel, *kernel_regularizer)?;
                if let Some(b) = l.bias {
                    bias_initializer.fill(params, b, seed);
                    set_regularizer(params, b, *bias_regularizer)?;
                }
                let shape = l.output_shape();
                Ok((Layer::Conv2D(l), shape))
            }
            LayerSpec::MaxPooling2D { name, pool_size, strides, padding }
            | LayerSpec::AveragePooling2D { name, pool_size, strides, padding } => {
                let kind =
                    if matches!(spec, LayerSpec::MaxPooling2D { .. }) { PoolKind::Max } else { PoolKind::Average };
                let l = Pool2D::build(
                    name,
                    kind,
                    input_shape,
                    *pool_size,
                    strides.unwrap_or(*pool_size),
                    *padding == Padding::Same,
                )?;
                let shape = l.output_shape();
                Ok((Layer::Pool(l), shape))
            }
            LayerSpec::GlobalAveragePooling2D { name } | LayerSpec::GlobalMaxPooling2D { name } => {
                let kind = if matches!(spec, LayerSpec::GlobalMaxPooling2D { .. }) {
                    PoolKind::Max
                } else {
                    PoolKind::Average
                };
                let l = GlobalPool2D::build(name, kind, input_shape)?;
                let shape = vec![l.channels];
                Ok((Layer::GlobalPool(l), shape))
            }
            LayerSpec::Flatten { .. } => {
                let n = input_shape.iter().product();
                Ok((Layer::Reshape(Reshape { per_sample: n }), vec![n]))
            }
            LayerSpec::Reshape { name, target_shape } => {
                let shape = reshape::reshape_target(name, input_shape, target_shape)?;
                Ok((Layer::Reshape(Reshape { per_sample: input_shape.iter().product() }), shape))
            }
            LayerSpec::Dropout { name, rate } | LayerSpec::SpatialDropout2D { name, rate } => {
                if !(0.0..1.0).contains(rate) {
                    return Err(crate::error::invalid(format!(
                        "dropout layer '{name}': rate must be in [0, 1); got {rate}"
                    )));
                }
                let kind = if matches!(spec, LayerSpec::Dropout { .. }) {
                    NoiseKind::Dropout { rate: *rate }
                } else {
                    let &[_, _, c] = input_shape else {
                        return Err(crate::error::invalid(format!(
                            "SpatialDropout2D '{name}' expects (height, width, channels); got {input_shape:?}"
                        )));
                    };
                    NoiseKind::SpatialDropout { rate: *rate, channels: c }
                };
                Ok((Layer::Noise(Noise { kind, per_sample: input_shape.iter().product() }), input_shape.to_vec()))
            }
            LayerSpec::GaussianNoise { name, stddev } => {
                if !(stddev.is_finite() && *stddev >= 0.0) {
                    return Err(crate::error::invalid(format!("GaussianNoise '{name}': stddev must be >= 0")));
                }
                let kind = NoiseKind::Gaussian { stddev: *stddev };
                Ok((Layer::Noise(Noise { kind, per_sample: input_shape.iter().product() }), input_shape.to_vec()))
            }
            LayerSpec::BatchNormalization { name, momentum, epsilon, center, scale } => {
                let kind = NormKind::Batch { momentum: *momentum };
                let l = Normalization::build(name, kind, input_shape, *epsilon, *center, *scale, params)?;
                Ok((Layer::Norm(l), input_shape.to_vec()))
            }
            LayerSpec::GroupNormalization { name, groups, epsilon, center, scale } => {
                let kind = NormKind::Group { groups: *groups };
                let l = Normalization::build(name, kind, input_shape, *epsilon, *center, *scale, params)?;
                Ok((Layer::Norm(l), input_shape.to_vec()))
            }
            LayerSpec::LayerNormalization { name, epsilon, center, scale } => {
                let l = Normalization::build(name, NormKind::Layer, input_shape, *epsilon, *center, *scale, params)?;
                Ok((Layer::Norm(l), input_shape.to_vec()))
            }
            LayerSpec::Rescaling { name, scale, offset } => {
                if !(scale.is_finite() && offset.is_finite()) {
                    return Err(crate::error::invalid(format!("Rescaling '{name}': scale and offset must be finite")));
                }
                Ok((Layer::Scale(Scale::rescaling(input_shape, *scale, *offset)), input_shape.to_vec()))
            }
            LayerSpec::Normalization { name } | LayerSpec::MinMaxNormalization { name } => {
                let min_max = matches!(spec, LayerSpec::MinMaxNormalization { .. });
                Ok((Layer::Scale(Scale::adaptive(name, input_shape, min_max, params)?), input_shape.to_vec()))
            }
            LayerSpec::RandomTransform {
                name,
                flip_horizontal,
                flip_vertical,
                translate,
                rotate,
                zoom,
                zoom_keeps_aspect,
            } => {
                let &[height, width, channels] = input_shape else {
                    return Err(crate::error::invalid(format!(
                        "augmentation layer '{name}' expects images (height, width, channels); got {input_shape:?}"
                    )));
                };
                let ranges = Augment {
                    flip_horizontal: *flip_horizontal,
                    flip_vertical: *flip_vertical,
                    translate: *translate,
                    rotate: *rotate,
                    zoom: *zoom,
                    zoom_keeps_aspect: *zoom_keeps_aspect,
                };
                if zoom.iter().flatten().any(|&z| z <= -1.0) {
                    return Err(crate::error::invalid(format!("RandomZoom '{name}': factors must be > -1")));
                }
                Ok((Layer::Augment(RandomTransform { ranges, height, width, channels }), input_shape.to_vec()))
            }
            LayerSpec::Residual { name, layers, shortcut } => {
                let (l, shape) = Residual::build(name, layers, shortcut.as_deref(), input_shape, params, seed)?;
                Ok((Layer::Residual(l), shape))
            }
            LayerSpec::PRelu { name, alpha_initializer, shared_axes, alpha_regularizer } => {
                let l = PRelu::build(name, input_shape, shared_axes, params)?;
                alpha_initializer.fill(params, l.alpha, seed);
                set_regularizer(params, l.alpha, *alpha_regularizer)?;
                Ok((Layer::PRelu(l), input_shape.to_vec()))
            }
            LayerSpec::Identity { .. } => {
                Ok((Layer::Reshape(Reshape { per_sample: input_shape.iter().product() }), input_shape.to_vec()))
            }
            LayerSpec::Activation { activation, .. } => {
                let layer = ActivationLayer {
                    activation: *activation,
                    per_sample: input_shape.iter().product(),
                    last_axis: input_shape.last().copied().unwrap_or(1),
                };
                Ok((Layer::Activation(layer), input_shape.to_vec()))
            }
            // The merges are built by the graph (from `merge_kind`), never as one-input layers;
            // any other spec reaching here lacks its arm above, which the round-trip test of
            // every layer class catches.
            other => Err(crate::error::invalid(match other.merge_kind() {
                Some(_) => format!(
                    "merge layer '{}' takes a list of inputs; it cannot be part of a Sequential model or a \
                     Residual block",
                    other.name()
                ),
                None => format!("layer '{}' has no engine implementation", other.name()),
            })),
        }
    }

    /// Values per sample the layer keeps between forward and backward besides its output.
    pub fn saved_width(&self) -> usize {
        match self {
            Layer::Dense(l) => l.saved_width(),
            Layer::Conv2D(l) => l.saved_width(),
            Layer::Pool(l) => l.saved_width(),
            Layer::GlobalPool(l) => l.saved_width(),
            Layer::Noise(l) => l.saved_width(),
            Layer::Norm(l) => l.saved_width(),
            Layer::Augment(l) => l.saved_width(),
            Layer::Scale(_) | Layer::Residual(_) => 0,
            Layer::Activation(_) | Layer::PRelu(_) | Layer::Reshape(_) => 0,
        }
    }

    /// Workspaces for the chains nested in this layer, for batches of `rows` samples.
    pub fn nested_workspaces(&self, rows: usize) -> Vec<GraphWorkspace> {
        match self {
            Layer::Residual(l) => l.workspaces(rows),
            _ => Vec::new(),
        }
    }

    /// Scratch per batch beyond the per-sample part (e.g. per-channel statistics).
    pub fn saved_extra(&self) -> usize {
        match self {
            Layer::Norm(l) => l.saved_extra(),
            Layer::Conv2D(l) => l.saved_extra(),
            _ => 0,
        }
    }

    pub fn forward(&self, p: ForwardPass<'_>) {
        match self {
            Layer::Dense(l) => l.forward(p.params, p.input, p.output, p.saved, p.rows),
            Layer::Activation(l) => l.forward(p.input, p.output, p.rows),
            Layer::PRelu(l) => l.forward(p.params, p.input, p.output, p.rows),
            Layer::Conv2D(l) => l.forward(p.params, p.input, p.output, p.saved, p.rows),
            Layer::Pool(l) => l.forward(p.input, p.output, p.saved, p.rows),
            Layer::GlobalPool(l) => l.forward(p.input, p.output, p.saved, p.rows),
            Layer::Reshape(l) => l.forward(p.input, p.output, p.rows),
            Layer::Noise(l) => l.forward(p.input, p.output, p.saved, p.rows, p.training, p.rng),
            Layer::Norm(l) => l.forward(p.params, p.input, p.output, p.saved, p.rows, p.training),
            Layer::Residual(l) => l.forward(p),
            Layer::Scale(l) => l.forward(p.params, p.input, p.output, p.rows),
            Layer::Augment(l) => l.forward(p.input, p.output, p.saved, p.rows, p.training, p.rng),
        }
    }

    pub fn backward(&self, pass: BackwardPass<'_>) {
        match self {
            Layer::Dense(l) => l.backward(pass),
            Layer::Activation(l) => l.backward(pass),
            Layer::PRelu(l) => l.backward(pass),
            Layer::Conv2D(l) => l.backward(pass),
            Layer::Pool(l) => l.backward(pass),
            Layer::GlobalPool(l) => l.backward(pass),
            Layer::Reshape(l) => l.backward(pass),
            Layer::Noise(l) => l.backward(pass),
            Layer::Norm(l) => l.backward(pass),
            Layer::Residual(l) => l.backward(pass),
            Layer::Scale(l) => l.backward(pass),
            Layer::Augment(l) => l.backward(pass),
        }
    }

    /// The activation applied last by this layer, which a loss may fuse with.
    pub fn final_activation(&self) -> Activation {
        match self {
            Layer::Dense(l) => l.activation,
            Layer::Activation(l) => l.activation,
            Layer::Conv2D(l) => l.activation,
            _ => Activation::Linear,
        }
    }
}
