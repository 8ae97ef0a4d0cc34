//! Errors and array conversions shared by the bindings.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferronet_core::model::Slices;
use ferronet_core::{Dataset, Error};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
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

/// A contiguous float32 view of a numpy array and its number of rows (first axis).
pub fn rows_of<'a>(name: &str, a: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<(&'a [f32], usize)> {
    let rows = a.shape().first().copied().unwrap_or(0);
    let slice =
        a.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous float32 array")))?;
    Ok((slice, rows))
}

/// Contiguous float32 views of a list of numpy arrays (one per model input or output).
pub fn slices<'a>(name: &str, arrays: &'a [PyReadonlyArrayDyn<'_, f32>]) -> PyResult<Slices<'a>> {
    arrays.iter().map(|a| rows_of(name, a).map(|(s, _)| s)).collect()
}

/// Rows of the first input (every array must agree; the engine checks the sizes).
pub fn rows(x: &[PyReadonlyArrayDyn<'_, f32>]) -> usize {
    x.first().and_then(|a| a.shape().first().copied()).unwrap_or(0)
}

/// A dataset view over the inputs `x`, the targets `y` (one per output; an empty array for an
/// output without a loss) and optional per-output sample weights.
pub fn dataset<'a>(
    x: &'a [PyReadonlyArrayDyn<'_, f32>],
    y: &'a [PyReadonlyArrayDyn<'_, f32>],
    w: &'a [Option<PyReadonlyArrayDyn<'_, f32>>],
) -> PyResult<Dataset<'a>> {
    let weights = w
        .iter()
        .map(|w| w.as_ref().map(|w| rows_of("sample_weight", w).map(|(s, _)| s)).transpose())
        .collect::<PyResult<_>>()?;
    Ok(Dataset { x: slices("x", x)?, y: slices("y", y)?, weights, rows: rows(x) })
}
