//! Whole safetensors files from Python: what `model.save` and `load_model` are built on.

use std::collections::HashMap;
use std::path::PathBuf;

use ferronet_core::persist;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::convert::{catch, guard, named_slices};

/// Writes named float32 arrays and string metadata to `path` atomically.
#[pyfunction]
pub fn write_tensor_file(
    py: Python<'_>,
    path: PathBuf,
    tensors: Vec<(String, PyReadonlyArrayDyn<'_, f32>)>,
    metadata: HashMap<String, String>,
) -> PyResult<()> {
    catch(|| {
        let named: Vec<_> = named_slices(&tensors, "tensor")?
            .into_iter()
            .zip(&tensors)
            .map(|((n, v), (_, a))| (n.to_string(), a.shape().to_vec(), v))
            .collect();
        py.detach(|| guard(|| persist::write_tensors(&path, &named, metadata)))
    })
}

/// Named arrays and string metadata of a tensor file, as Python sees them.
type TensorFileContents<'py> = (HashMap<String, Bound<'py, PyArrayDyn<f32>>>, HashMap<String, String>);

/// Reads every tensor and the metadata of a safetensors file; raises on a missing, truncated or
/// foreign file.
#[pyfunction]
pub fn read_tensor_file<'py>(py: Python<'py>, path: PathBuf) -> PyResult<TensorFileContents<'py>> {
    catch(|| {
        let file = py.detach(|| guard(|| persist::read_tensors(&path)))?;
        let mut out = HashMap::new();
        for (name, (shape, values)) in file.tensors {
            out.insert(name, PyArray1::from_vec(py, values).reshape(shape)?);
        }
        Ok((out, file.metadata))
    })
}
