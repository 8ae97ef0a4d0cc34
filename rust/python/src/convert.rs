//! Errors and array conversions shared by the bindings.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferronet_core::{Dataset, Error};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
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

/// A contiguous float32 view of a numpy array and its number of rows (first axis).
pub fn rows_of<'a>(name: &str, a: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<(&'a [f32], usize)> {
    let rows = a.shape().first().copied().unwrap_or(0);
    let slice =
        a.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous float32 array")))?;
    Ok((slice, rows))
}

/// A dataset view over `x`, `y` and optional per-sample weights (rows on axis 0).
pub fn dataset<'a>(
    x: &'a PyReadonlyArrayDyn<'_, f32>,
    y: &'a PyReadonlyArrayDyn<'_, f32>,
    w: Option<&'a PyReadonlyArrayDyn<'_, f32>>,
) -> PyResult<Dataset<'a>> {
    let (xs, rows) = rows_of("x", x)?;
    let (ys, _) = rows_of("y", y)?;
    let weights = match w {
        Some(w) => Some(rows_of("sample_weight", w)?.0),
        None => None,
    };
    Ok(Dataset { x: xs, y: ys, weights, rows })
}
