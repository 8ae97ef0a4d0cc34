//! ferronet-core: the pure-Rust engine behind the `ferronet` Python package.
//!
//! A [`model::Model`] owns a [`network::Network`] (a graph of layer calls, [`graph::Graph`], plus
//! one flat parameter store), the compiled heads and trainer, and reusable work buffers.
//!
//! The public edge speaks `ndarray`: data sets are built from array views
//! ([`Dataset::from_arrays`]), [`Model::predict`] returns arrays shaped like the outputs,
//! weights are views of their shapes ([`Model::weight`]). Inside, tensors are flat `f32`
//! buffers and hot kernels work on slices. Nothing here knows about Python: the binding hands
//! numpy arrays over as ndarray views, without a copy. `examples/two_heads.rs` trains a
//! two-input, two-output model from Rust.

pub mod activation;
pub mod alloc;
pub mod cpu;
pub mod error;
pub mod gemm;
pub mod graph;
pub mod init;
pub mod layers;
pub mod loss;
pub mod metric;
pub mod model;
pub mod network;
pub mod optim;
pub mod params;
pub mod persist;
pub mod regularizer;
pub mod rng;
pub mod simd;
pub mod threads;

#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
pub use graph::{GraphSpec, InputSpec, NodeSpec, TensorRef};
pub use model::{CompileSpec, Dataset, HeadSpec, Logs, Model};
pub use network::ModelSpec;
