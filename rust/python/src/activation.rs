//! Activation functions applied to numpy arrays (`ferronet.activations.relu(x)` and friends):
//! the engine's own implementation, so Python sees exactly the values training uses.

use ferronet_core::activation::Activation;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{catch, contiguous, zeros};

/// `f(x)` along the last axis of `x` (row-wise for softmax), as a new float32 array.
#[pyfunction]
pub fn activation_forward<'py>(
    py: Python<'py>,
    spec_json: &str,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    catch(|| {
        let act: Activation = serde_json::from_str(spec_json)
            .map_err(|e| PyValueError::new_err(format!("invalid activation specification: {e}")))?;
        let cols = x.shape().last().copied().unwrap_or(1).max(1);
        let src = x.as_slice().map_err(|_| PyValueError::new_err("x must be C-contiguous float32"))?;
        let out = zeros(py, x.shape())?;
        {
            let mut rw = out.readwrite();
            let dst = contiguous(&mut rw)?;
            dst.copy_from_slice(src);
            py.detach(|| ferronet_core::threads::install(|| act.forward(dst, cols)));
        }
        Ok(out)
    })
}
