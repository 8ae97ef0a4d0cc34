//! The one list of the engine's layers. A layer's configuration is registered under its `type`
//! (the snake_case Keras class name the Python side sends); a built layer that runs on one input
//! is registered as a kernel. Adding a layer is one line here (two when it brings a new kernel).

use serde::{Deserialize, Serialize};

use super::activation::{ActivationConfig, ActivationLayer, LeakyReluConfig, ReluConfig, SoftmaxConfig};
use super::augment::{
    RandomFlipConfig, RandomRotationConfig, RandomTransform, RandomTranslationConfig, RandomZoomConfig,
};
use super::conv2d::{Conv2D, Conv2DConfig};
use super::dense::{Dense, DenseConfig};
use super::dropout::{DropoutConfig, GaussianNoiseConfig, Noise, SpatialDropout2DConfig};
use super::merge::{
    AddConfig, AverageConfig, ConcatenateConfig, DotConfig, MaximumConfig, MinimumConfig, MultiplyConfig,
    SubtractConfig,
};
use super::normalization::{
    BatchNormalizationConfig, GroupNormalizationConfig, LayerNormalizationConfig, Normalization,
};
use super::pool::{
    AveragePooling2DConfig, GlobalAveragePooling2DConfig, GlobalMaxPooling2DConfig, GlobalPool2D, MaxPooling2DConfig,
    Pool2D,
};
use super::prelu::{PRelu, PReluConfig};
use super::preprocess::{MinMaxNormalizationConfig, NormalizationConfig, RescalingConfig, Scale};
use super::reshape::{FlattenConfig, IdentityConfig, Reshape, ReshapeConfig};
use super::residual::{Residual, ResidualConfig};
use super::spec::BuildLayer;
use super::{BackwardPass, ForwardPass, LayerKernel};
use crate::activation::Activation;
use crate::graph::GraphWorkspace;

macro_rules! register_layers {
    (
        configs { $($type_name:literal => $variant:ident($config:ty)),* $(,)? }
        kernels { $($kernel:ident),* $(,)? }
    ) => {
        /// A layer's configuration, tagged by its `type`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum LayerConfig {
            $(#[serde(rename = $type_name)] $variant($config),)*
        }

        impl LayerConfig {
            /// Every registered `type`.
            pub const TYPES: &'static [&'static str] = &[$($type_name),*];

            pub(crate) fn as_builder(&self) -> &dyn BuildLayer {
                match self {
                    $(LayerConfig::$variant(c) => c,)*
                }
            }

            /// The `type` this configuration is registered under.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(LayerConfig::$variant(_) => $type_name,)*
                }
            }
        }

        $(impl From<$config> for LayerConfig {
            fn from(c: $config) -> Self {
                LayerConfig::$variant(c)
            }
        })*

        /// A built layer that runs on one input.
        #[derive(Clone, Debug)]
        pub enum Layer {
            $($kernel($kernel),)*
        }

        $(impl From<$kernel> for Layer {
            fn from(l: $kernel) -> Self {
                Layer::$kernel(l)
            }
        })*

        impl Layer {
            /// The built kernel inside, as a trait object: one match, and every method of
            /// [`LayerKernel`] below goes through it (a call per layer and pass, not per value).
            fn kernel(&self) -> &dyn LayerKernel {
                match self {
                    $(Layer::$kernel(l) => l,)*
                }
            }
        }

        impl LayerKernel for Layer {
            fn forward(&self, p: ForwardPass<'_>) {
                self.kernel().forward(p)
            }

            fn backward(&self, p: BackwardPass<'_>) {
                self.kernel().backward(p)
            }

            fn saved_width(&self) -> usize {
                self.kernel().saved_width()
            }

            fn saved_extra(&self) -> usize {
                self.kernel().saved_extra()
            }

            fn inference_width(&self) -> usize {
                self.kernel().inference_width()
            }

            fn inference_extra(&self) -> usize {
                self.kernel().inference_extra()
            }

            fn nested_workspaces(&self, rows: usize) -> Vec<GraphWorkspace> {
                self.kernel().nested_workspaces(rows)
            }

            fn final_activation(&self) -> Activation {
                self.kernel().final_activation()
            }

            fn uses_batch_statistics(&self) -> bool {
                self.kernel().uses_batch_statistics()
            }
        }
    };
}

register_layers! {
    configs {
        "dense" => Dense(DenseConfig),
        "conv2d" => Conv2D(Conv2DConfig),
        "max_pooling2d" => MaxPooling2D(MaxPooling2DConfig),
        "average_pooling2d" => AveragePooling2D(AveragePooling2DConfig),
        "global_average_pooling2d" => GlobalAveragePooling2D(GlobalAveragePooling2DConfig),
        "global_max_pooling2d" => GlobalMaxPooling2D(GlobalMaxPooling2DConfig),
        "flatten" => Flatten(FlattenConfig),
        "reshape" => Reshape(ReshapeConfig),
        "identity" => Identity(IdentityConfig),
        "dropout" => Dropout(DropoutConfig),
        "spatial_dropout2d" => SpatialDropout2D(SpatialDropout2DConfig),
        "gaussian_noise" => GaussianNoise(GaussianNoiseConfig),
        "batch_normalization" => BatchNormalization(BatchNormalizationConfig),
        "layer_normalization" => LayerNormalization(LayerNormalizationConfig),
        "group_normalization" => GroupNormalization(GroupNormalizationConfig),
        "rescaling" => Rescaling(RescalingConfig),
        "normalization" => Normalization(NormalizationConfig),
        "min_max_normalization" => MinMaxNormalization(MinMaxNormalizationConfig),
        "random_flip" => RandomFlip(RandomFlipConfig),
        "random_translation" => RandomTranslation(RandomTranslationConfig),
        "random_rotation" => RandomRotation(RandomRotationConfig),
        "random_zoom" => RandomZoom(RandomZoomConfig),
        "residual" => Residual(ResidualConfig),
        "prelu" => PRelu(PReluConfig),
        "activation" => Activation(ActivationConfig),
        "relu" => ReLU(ReluConfig),
        "leaky_relu" => LeakyReLU(LeakyReluConfig),
        "softmax" => Softmax(SoftmaxConfig),
        "add" => Add(AddConfig),
        "subtract" => Subtract(SubtractConfig),
        "multiply" => Multiply(MultiplyConfig),
        "average" => Average(AverageConfig),
        "maximum" => Maximum(MaximumConfig),
        "minimum" => Minimum(MinimumConfig),
        "concatenate" => Concatenate(ConcatenateConfig),
        "dot" => Dot(DotConfig),
    }
    kernels {
        Dense, ActivationLayer, PRelu, Conv2D, Pool2D, GlobalPool2D, Reshape, Noise, Normalization, Residual,
        Scale, RandomTransform,
    }
}
