//! The `Model` Python class: a compiled ferronet network.

use std::time::{Duration, Instant};

use ferronet_core::{CompileSpec, GraphSpec, Logs, Model};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{array_of, catch, contiguous, dataset, guard, rows, slices, zeros};

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("invalid {what} specification: {e}")))
}

fn logs_out(l: Logs) -> Vec<(String, f64)> {
    l.0
}

/// A network built from a JSON architecture; `compile` adds loss, optimizer and metrics.
#[pyclass(name = "Model", module = "ferronet._core")]
pub struct PyModel {
    inner: Model,
}

#[pymethods]
impl PyModel {
    /// Builds the network from a JSON `GraphSpec`, drawing initial weights from `seed`.
    #[new]
    fn new(spec_json: &str, seed: u64) -> PyResult<Self> {
        catch(|| {
            let spec: GraphSpec = parse("model", spec_json)?;
            guard(|| Model::new(&spec, seed)).map(|inner| Self { inner })
        })
    }

    /// Per-sample output shape of one layer called on tensors of per-sample `input_shapes`
    /// (the layer's JSON spec); raises what building it in a model would raise.
    #[staticmethod]
    fn layer_output_shape(spec_json: &str, input_shapes: Vec<Vec<usize>>) -> PyResult<Vec<usize>> {
        catch(|| {
            let layer: ferronet_core::layers::LayerSpec = parse("layer", spec_json)?;
            guard(|| ferronet_core::graph::Graph::layer_output_shape(&layer, &input_shapes))
        })
    }

    /// Sets loss, optimizer and metrics from a JSON `CompileSpec`; optimizer state starts afresh.
    fn compile(&mut self, spec_json: &str) -> PyResult<()> {
        catch(|| {
            let spec: CompileSpec = parse("compile", spec_json)?;
            guard(|| self.inner.compile(&spec))
        })
    }

    /// Per-sample output shape of each node (layer call), in graph order.
    #[getter]
    fn node_output_shapes(&self) -> PyResult<Vec<Vec<usize>>> {
        catch(|| Ok(self.inner.net.node_shapes()))
    }

    /// Per-sample shape of each model output.
    #[getter]
    fn output_shapes(&self) -> PyResult<Vec<Vec<usize>>> {
        catch(|| {
            let g = &self.inner.net.graph;
            Ok(g.outputs.iter().map(|&r| g.shape(r).to_vec()).collect())
        })
    }

    /// Per layer of the graph (spec order): the indices of its weight tensors.
    #[getter]
    fn layer_weight_indices(&self) -> PyResult<Vec<Vec<usize>>> {
        catch(|| Ok(self.inner.net.graph.layers.iter().map(|l| l.tensors.clone().collect()).collect()))
    }

    /// Freezes the layers flagged `True` (one flag per layer of the graph, spec order).
    fn set_frozen(&mut self, frozen: Vec<bool>) -> PyResult<()> {
        catch(|| guard(|| self.inner.set_frozen(&frozen)))
    }

    /// Per output, values per target row its loss expects (0 without a loss).
    fn target_widths(&self) -> PyResult<Vec<usize>> {
        catch(|| guard(|| self.inner.target_widths()))
    }

    /// Checks shapes, NaN/Inf and labels of a data set once (`what` names the calling method).
    #[pyo3(signature = (x, y, sample_weight, what))]
    fn validate(
        &self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
        what: &str,
    ) -> PyResult<()> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            let model = &self.inner;
            py.detach(|| guard(|| model.validate(&data, what)))
        })
    }

    /// Starts an epoch (draws the shuffled order).
    fn begin_epoch(&mut self, rows: usize, batch_size: usize, shuffle: bool) -> PyResult<()> {
        catch(|| guard(|| self.inner.begin_epoch(rows, batch_size, shuffle)))
    }

    /// Trains for about `seconds` (at least one step) without the GIL; `True` when the epoch ended.
    #[pyo3(signature = (x, y, sample_weight, seconds, max_steps=usize::MAX))]
    fn train_steps(
        &mut self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
        seconds: f64,
        max_steps: usize,
    ) -> PyResult<bool> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
            let model = &mut self.inner;
            py.detach(|| guard(|| model.train_steps(&data, Some(deadline), max_steps)))
        })
    }

    #[getter]
    fn steps_done(&self) -> PyResult<usize> {
        catch(|| Ok(self.inner.steps_done()))
    }

    #[getter]
    fn steps_total(&self) -> PyResult<usize> {
        catch(|| Ok(self.inner.steps_total()))
    }

    /// Running loss and metrics of the current epoch.
    fn epoch_logs(&self) -> PyResult<Vec<(String, f64)>> {
        catch(|| Ok(logs_out(self.inner.epoch_logs())))
    }

    /// One optimizer step on this batch; returns its loss and metrics.
    #[pyo3(signature = (x, y, sample_weight))]
    fn train_on_batch(
        &mut self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
    ) -> PyResult<Vec<(String, f64)>> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            let model = &mut self.inner;
            py.detach(|| guard(|| model.train_on_batch(&data))).map(logs_out)
        })
    }

    /// Loss and metrics in inference mode.
    #[pyo3(signature = (x, y, sample_weight, batch_size))]
    fn evaluate(
        &mut self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
        batch_size: usize,
    ) -> PyResult<Vec<(String, f64)>> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            let model = &mut self.inner;
            py.detach(|| guard(|| model.evaluate(&data, batch_size))).map(logs_out)
        })
    }

    /// Forward pass (inference unless `training`): per output, a new float32 array
    /// `(rows, *output_shape)`.
    #[pyo3(signature = (x, batch_size, training=false))]
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        batch_size: usize,
        training: bool,
    ) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        catch(|| {
            let (xs, n) = (slices("x", &x)?, rows(&x));
            let outs = self
                .output_shapes()?
                .into_iter()
                .map(|shape| zeros(py, &[vec![n], shape].concat()))
                .collect::<PyResult<Vec<_>>>()?;
            {
                let mut rws: Vec<_> = outs.iter().map(|o| o.readwrite()).collect();
                let mut views = rws.iter_mut().map(contiguous).collect::<PyResult<Vec<_>>>()?;
                let model = &mut self.inner;
                py.detach(|| guard(|| model.call(&xs, n, batch_size, training, &mut views)))?;
            }
            Ok(outs)
        })
    }

    /// Copies of every weight tensor, in Keras order (per layer: kernel, then bias).
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        catch(|| {
            let p = &self.inner.net.params;
            p.tensors.iter().map(|t| array_of(py, &p.values[t.range()], &t.shape)).collect()
        })
    }

    /// Names of the weight tensors (`layer/kernel`, `layer/bias`), in `get_weights` order.
    #[getter]
    fn weight_names(&self) -> PyResult<Vec<String>> {
        catch(|| Ok(self.inner.net.params.tensors.iter().map(|t| t.name.clone()).collect()))
    }

    /// Whether each weight tensor is trained (false for moving statistics and preprocessing
    /// statistics, whatever the layer's `trainable` flag), in `get_weights` order.
    #[getter]
    fn weight_trainable(&self) -> PyResult<Vec<bool>> {
        catch(|| {
            Ok(self
                .inner
                .net
                .params
                .tensors
                .iter()
                .map(|t| t.role != ferronet_core::params::Role::NonTrainable)
                .collect())
        })
    }

    /// Shapes of the weight tensors, in `get_weights` order.
    #[getter]
    fn weight_shapes(&self) -> PyResult<Vec<Vec<usize>>> {
        catch(|| Ok(self.inner.net.params.tensors.iter().map(|t| t.shape.clone()).collect()))
    }

    /// Replaces weight tensor `index` with the values of `value` (same shape required).
    fn set_weight(&mut self, index: usize, value: PyReadonlyArrayDyn<'_, f32>) -> PyResult<()> {
        catch(|| {
            let p = &mut self.inner.net.params;
            let t = p.tensors.get(index).ok_or_else(|| PyValueError::new_err(format!("no weight #{index}")))?;
            if value.shape() != t.shape.as_slice() {
                return Err(PyValueError::new_err(format!(
                    "weight '{}' has shape {:?}; got an array of shape {:?}",
                    t.name,
                    t.shape,
                    value.shape()
                )));
            }
            let src = value.as_slice().map_err(|_| PyValueError::new_err("weights must be C-contiguous float32"))?;
            let range = t.range();
            p.values[range].copy_from_slice(src);
            Ok(())
        })
    }

    /// Saves every weight to a safetensors file at `path` (atomically), with string `metadata`.
    fn save_weights(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        metadata: std::collections::HashMap<String, String>,
    ) -> PyResult<()> {
        catch(|| {
            let store = &self.inner.net.params;
            py.detach(|| guard(|| ferronet_core::persist::save_weights(store, &path, metadata)))
        })
    }

    /// Loads every weight from a safetensors file; returns its metadata. Nothing changes on error.
    fn load_weights(
        &mut self,
        py: Python<'_>,
        path: std::path::PathBuf,
    ) -> PyResult<std::collections::HashMap<String, String>> {
        catch(|| {
            let store = &mut self.inner.net.params;
            py.detach(|| {
                guard(|| {
                    let file = ferronet_core::persist::read_tensors(&path)?;
                    ferronet_core::persist::load_weights(store, &file, &path)?;
                    Ok(file.metadata)
                })
            })
        })
    }

    /// Learning rate the next update will use (from the schedule, if any).
    #[getter]
    fn learning_rate(&self) -> PyResult<Option<f64>> {
        catch(|| Ok(self.inner.optimizer().map(|o| o.current_learning_rate())))
    }

    /// Replaces the rate (and any schedule) with a constant.
    #[setter]
    fn set_learning_rate(&mut self, lr: f64) -> PyResult<()> {
        catch(|| match self.inner.optimizer_mut() {
            Some(o) => guard(|| o.set_learning_rate(lr)),
            None => Err(PyValueError::new_err("the model is not compiled")),
        })
    }

    /// Learning rate used by the latest update.
    #[getter]
    fn last_learning_rate(&self) -> PyResult<Option<f64>> {
        catch(|| Ok(self.inner.optimizer().map(|o| o.last_learning_rate)))
    }

    /// Optimizer state buffers as `(name, flat float32 array)`, in a fixed order.
    fn optimizer_slots<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyArrayDyn<f32>>)>> {
        catch(|| {
            let slots = self.inner.optimizer().map(|o| o.slots()).unwrap_or_default();
            slots.into_iter().map(|(n, v)| Ok((n.to_string(), array_of(py, v, &[v.len()])?))).collect()
        })
    }

    /// Restores optimizer state saved from `optimizer_slots` and `iterations`.
    fn set_optimizer_state(
        &mut self,
        iterations: u64,
        slots: Vec<(String, PyReadonlyArrayDyn<'_, f32>)>,
    ) -> PyResult<()> {
        catch(|| {
            let owned = slots
                .iter()
                .map(|(n, a)| {
                    let v = a
                        .as_slice()
                        .map_err(|_| PyValueError::new_err("optimizer state must be contiguous float32"))?;
                    Ok((n.clone(), v.to_vec()))
                })
                .collect::<PyResult<Vec<_>>>()?;
            match self.inner.optimizer_mut() {
                Some(o) => guard(|| o.restore(iterations, &owned)),
                None => Err(PyValueError::new_err("the model is not compiled")),
            }
        })
    }

    /// The shuffling and noise random streams as JSON (saved with the model).
    #[getter]
    fn rng_state(&self) -> PyResult<String> {
        catch(|| Ok(self.inner.rng_state()))
    }

    #[setter]
    fn set_rng_state(&mut self, json: &str) -> PyResult<()> {
        catch(|| guard(|| self.inner.set_rng_state(json)))
    }

    /// Whether per-layer gradient norms are recorded during `fit`.
    #[getter]
    fn grad_monitor(&self) -> PyResult<bool> {
        catch(|| Ok(self.inner.grad_monitor.is_some()))
    }

    #[setter]
    fn set_grad_monitor(&mut self, on: bool) -> PyResult<()> {
        catch(|| {
            self.inner.grad_monitor = on.then(|| ferronet_core::model::GradMonitor::new(&self.inner.net.params));
            Ok(())
        })
    }

    /// Mean L2 norm of each layer's weight gradient over the steps since the last call.
    fn take_grad_norms(&mut self) -> PyResult<Vec<(String, f64)>> {
        catch(|| Ok(self.inner.grad_monitor.as_mut().map(|m| m.take()).unwrap_or_default()))
    }

    /// Mean loss over `x, y` as one batch (training mode, fixed noise) and the gradient of every
    /// weight, in `get_weights` order: what gradient checks compare with finite differences.
    fn compute_gradients<'py>(
        &mut self,
        py: Python<'py>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
    ) -> PyResult<(f64, Vec<Bound<'py, PyArrayDyn<f32>>>)> {
        catch(|| {
            let data = dataset(&x, &y, &[])?;
            let model = &mut self.inner;
            let loss = py.detach(|| guard(|| model.compute_gradients(&data)))?;
            let p = &self.inner.net.params;
            let grads =
                p.tensors.iter().map(|t| array_of(py, &p.grads[t.range()], &t.shape)).collect::<PyResult<Vec<_>>>()?;
            Ok((loss, grads))
        })
    }

    /// Whether `fit` stops, without applying it, at the first batch with a NaN or infinite loss.
    #[getter]
    fn stop_on_nan(&self) -> PyResult<bool> {
        catch(|| Ok(self.inner.stop_on_nan))
    }

    #[setter]
    fn set_stop_on_nan(&mut self, on: bool) -> PyResult<()> {
        catch(|| {
            self.inner.stop_on_nan = on;
            Ok(())
        })
    }

    /// Step of the current epoch at which a non-finite loss stopped training, if any.
    #[getter]
    fn nan_at(&self) -> PyResult<Option<usize>> {
        catch(|| Ok(self.inner.nan_at()))
    }

    /// Optimizer steps taken since `compile`.
    #[getter]
    fn iterations(&self) -> PyResult<u64> {
        catch(|| Ok(self.inner.optimizer().map_or(0, |o| o.iterations)))
    }
}
