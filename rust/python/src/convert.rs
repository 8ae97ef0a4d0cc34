//! Errors and array conversions shared by the bindings.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferronet_core::{Dataset, Error};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyMemoryError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
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
        Error::PermissionDenied(m) => PyPermissionError::new_err(m),
        Error::Io(m) => PyOSError::new_err(m),
        Error::OutOfMemory(m) => PyMemoryError::new_err(m),
        Error::Interrupted => PyKeyboardInterrupt::new_err("training interrupted"),
    }
}

/// Runs the body of a binding entry point so that no panic reaches Python as
/// `PanicException` (which `except Exception` does not catch): a size that overflowed raises
/// `MemoryError`, any other panic `FerronetError`.
pub fn catch<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(if msg.contains("capacity overflow") {
            PyMemoryError::new_err(format!("cannot allocate memory: {msg}"))
        } else {
            FerronetError::new_err(format!("internal error in the ferronet engine: {msg}"))
        })
    })
}

/// Runs `f`, turning engine errors into Python exceptions and panics as [`catch`] does.
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> PyResult<T> {
    catch(|| f().map_err(to_py))
}

/// A new zero-filled float32 array, allocated by numpy so that a request too large for memory
/// raises `MemoryError` instead of aborting.
pub fn zeros<'py>(py: Python<'py>, shape: &[usize]) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let a = py.import("numpy")?.getattr("zeros")?.call1((shape.to_vec(), "float32"))?;
    Ok(a.cast_into::<PyArrayDyn<f32>>()?)
}

/// The values of an array this binding allocated (always C-contiguous).
pub fn contiguous<'a>(rw: &'a mut PyReadwriteArrayDyn<'_, f32>) -> PyResult<&'a mut [f32]> {
    rw.as_slice_mut().map_err(|_| FerronetError::new_err("internal error: a new array is not contiguous"))
}

/// The values of named float32 arrays (`what` names them in the error for a strided one).
pub fn named_slices<'a>(
    arrays: &'a [(String, PyReadonlyArrayDyn<'_, f32>)],
    what: &str,
) -> PyResult<Vec<(&'a str, &'a [f32])>> {
    arrays
        .iter()
        .map(|(n, a)| {
            let v =
                a.as_slice().map_err(|_| PyValueError::new_err(format!("{what} '{n}' must be contiguous float32")))?;
            Ok((n.as_str(), v))
        })
        .collect()
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
