//! Loss functions called directly from Python (`loss(y_true, y_pred)` as in Keras).

use ferronet_core::loss::Loss;
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{catch, guard};

/// Mean over samples of the loss `spec_json` between `y_true` and `y_pred` (rows on axis 0).
#[pyfunction]
pub fn loss_value(
    spec_json: &str,
    y_true: PyReadonlyArrayDyn<'_, f32>,
    y_pred: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<f64> {
    catch(|| loss_of(spec_json, &y_true, &y_pred))
}

fn loss_of(
    spec_json: &str,
    y_true: &PyReadonlyArrayDyn<'_, f32>,
    y_pred: &PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<f64> {
    let loss: Loss = serde_json::from_str(spec_json)
        .map_err(|e| PyValueError::new_err(format!("invalid loss specification: {e}")))?;
    guard(|| loss.mean(&y_true.as_array(), &y_pred.as_array()))
}
