//! Learning-rate schedules evaluated from Python (`schedule(step)`), by the engine's own code.

use ferronet_core::optim::LearningRate;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The rate of schedule `spec_json` at update `step` (0-based), with `steps_per_epoch` for
/// epoch-based warm-up.
#[pyfunction]
#[pyo3(signature = (spec_json, step, steps_per_epoch=1))]
pub fn schedule_value(spec_json: &str, step: u64, steps_per_epoch: u64) -> PyResult<f64> {
    crate::convert::catch(|| {
        let lr: LearningRate = serde_json::from_str(spec_json)
            .map_err(|e| PyValueError::new_err(format!("invalid schedule specification: {e}")))?;
        lr.validate().map_err(crate::convert::to_py)?;
        Ok(lr.at(step, steps_per_epoch.max(1)))
    })
}
