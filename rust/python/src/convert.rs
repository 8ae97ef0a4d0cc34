//! Errors and array conversions shared by the bindings.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferronet_core::{Dataset, Error};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    ferronet,
    FerronetError,
    PyRuntimeError,
    "An internal error of the ferronet engine; the model is left usable."
);

/// Maps an engine error to the Python exception a user expects.
pub fn to_py(e: Error) -> PyErr {
    match e {
        Error::InvalidArgument(m) | Error::InvalidState(m) => PyValueError::new_err(m),
        Error::NotFound(m) => PyFileNotFoundError::new_err(m),
        Error::Io(m) => PyOSError::new_err(m),
        Error::Interrupted => PyKeyboardInterrupt::new_err("training interrupted"),
    }
}

/// Runs `f`, turning engine errors into Python exceptions and panics into `FerronetError`.
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_py),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(FerronetError::new_err(format!("internal error in the ferronet engine: {msg}")))
        }
    }
}

/// A dataset over the inputs `x`, the targets `y` (one per output; an empty array for an output
/// without a loss) and optional per-output sample weights: numpy arrays handed to the engine as
/// ndarray views, without a copy.
pub fn dataset<'a>(
    x: &'a [PyReadonlyArrayDyn<'_, f32>],
    y: &'a [PyReadonlyArrayDyn<'_, f32>],
    w: &'a [Option<PyReadonlyArrayDyn<'_, f32>>],
) -> PyResult<Dataset<'a>> {
    let views = |arrays: &'a [PyReadonlyArrayDyn<'_, f32>]| arrays.iter().map(|a| a.as_array()).collect::<Vec<_>>();
    let weights: Vec<_> = w.iter().map(|w| w.as_ref().map(|w| w.as_array())).collect();
    guard(|| Dataset::from_arrays(&views(x), &views(y), &weights))
}
