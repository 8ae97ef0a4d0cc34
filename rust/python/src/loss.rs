//! Loss functions called directly from Python (`loss(y_true, y_pred)` as in Keras).

use ferronet_core::loss::Loss;
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{catch, guard, rows_of};

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
    let (pred, rows) = rows_of("y_pred", y_pred)?;
    let (truth, _) = rows_of("y_true", y_true)?;
    if rows == 0 || pred.is_empty() {
        return Err(PyValueError::new_err("y_pred is empty"));
    }
    let cols = pred.len() / rows;
    let tw = loss.target_width(cols);
    if truth.len() != rows * tw {
        return Err(PyValueError::new_err(format!(
            "y_true must hold {tw} value(s) per sample to match y_pred of {cols} per sample; got {} values for {rows} samples",
            truth.len()
        )));
    }
    guard(|| {
        loss.validate_targets(truth, cols)?;
        Ok(loss.evaluate(pred, truth, None, rows, cols, false, 1.0, None) / rows as f64)
    })
}
