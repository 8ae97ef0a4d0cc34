//! ferronet-core: the pure-Rust engine behind the `ferronet` Python package.
//!
//! Tensors are flat `f32` buffers; a [`model::Model`] owns a [`network::Network`] (a graph of
//! layer calls, [`graph::Graph`], plus one flat parameter store), the compiled loss, optimizer and metrics, and reusable work buffers.
//! Nothing here knows about Python: the binding crate borrows numpy arrays and calls in.

pub mod activation;
pub mod alloc;
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
