//! The one error type of the engine. Every fallible entry point returns it, so the binding can
//! map each kind to the Python exception a user expects (ValueError for bad input).

/// What went wrong, in words a user of the Python API can act on.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// An argument, shape, label or value the caller passed is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// An operation needs state the model does not have yet (e.g. `fit` before `compile`).
    #[error("{0}")]
    InvalidState(String),
    /// A file to read does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Memory for a buffer (weights, activations) could not be had; nothing changed.
    #[error("{0}")]
    OutOfMemory(String),
    /// A file may not be written (no write permission, or read-only).
    #[error("{0}")]
    PermissionDenied(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// A step observer asked the loop to stop with an error (e.g. Ctrl-C was pressed).
    #[error("training interrupted")]
    Interrupted,
}

/// Result alias used across the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for [`Error::InvalidArgument`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
