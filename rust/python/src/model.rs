//! The `Model` Python class: a compiled ferronet network, safe to share between threads
//! (`shared.rs` says how).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferronet_core::model::Scratch;
use ferronet_core::{CompileSpec, Error, GraphSpec, Logs, Model};
use numpy::ndarray::ArrayD;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::convert::{catch, contiguous, dataset, guard, named_slices, zeros};
use crate::shared::Shared;

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("invalid {what} specification: {e}")))
}

fn logs_out(l: Logs) -> Vec<(String, f64)> {
    l.0
}

fn not_compiled() -> Error {
    Error::InvalidState("the model is not compiled".into())
}

/// Copies `src` into `dst`, refusing (instead of panicking) when the model changed shape
/// between allocating `dst` and filling it.
fn fill(dst: &mut [f32], src: &[f32]) -> Result<(), Error> {
    if dst.len() != src.len() {
        return Err(Error::InvalidState("the model was recompiled while it was being read".into()));
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// A network built from a JSON architecture; `compile` adds loss, optimizer and metrics.
#[pyclass(name = "Model", module = "ferronet._core", frozen)]
pub struct PyModel {
    shared: Shared,
}

impl PyModel {
    /// New arrays of `shapes`, then filled under one shared lock: `copy(model, k, dst)` writes
    /// array `k`, and `also(model)` reads what else must come from the same moment.
    fn arrays<'py, T: Send>(
        &self,
        py: Python<'py>,
        shapes: &[Vec<usize>],
        copy: impl Fn(&Model, usize, &mut [f32]) -> Result<(), Error> + Send + Sync,
        also: impl FnOnce(&Model) -> T + Send,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, T)> {
        let arrays = shapes.iter().map(|s| zeros(py, s)).collect::<PyResult<Vec<_>>>()?;
        let more = {
            let mut rws: Vec<_> = arrays.iter().map(|a| a.readwrite()).collect();
            let mut views = rws.iter_mut().map(contiguous).collect::<PyResult<Vec<_>>>()?;
            self.shared.read(py, |m| {
                guard(|| views.iter_mut().enumerate().try_for_each(|(k, v)| copy(m, k, v)))?;
                Ok::<_, PyErr>(also(m))
            })?
        };
        Ok((arrays, more))
    }

    /// Weight `k`, then optimizer slot `k - weights`.
    fn copy_state(m: &Model, k: usize, dst: &mut [f32]) -> Result<(), Error> {
        let p = &m.net.params;
        match p.tensors.get(k) {
            Some(t) => fill(dst, &p.values[t.range()]),
            None => {
                let slots = m.trainer().ok_or_else(not_compiled)?.slots();
                fill(dst, slots.get(k - p.tensors.len()).map_or(&[][..], |s| s.1))
            }
        }
    }

    /// Names and shapes of the weights, then (when asked) of the optimizer slots.
    fn state_layout(&self, py: Python<'_>, optimizer: bool) -> (Vec<String>, Vec<Vec<usize>>) {
        self.shared.read(py, |m| {
            let weights = m.net.params.tensors.iter().map(|t| (t.name.clone(), t.shape.clone()));
            let slots = m.trainer().filter(|_| optimizer).map(|t| t.slots()).unwrap_or_default();
            weights.chain(slots.into_iter().map(|(n, v)| (n.to_string(), vec![v.len()]))).unzip()
        })
    }
}

#[pymethods]
impl PyModel {
    /// Builds the network from a JSON `GraphSpec`, drawing initial weights from `seed`.
    #[new]
    fn new(spec_json: &str, seed: u64) -> PyResult<Self> {
        catch(|| {
            let spec: GraphSpec = parse("model", spec_json)?;
            guard(|| Model::new(&spec, seed)).map(|m| Self { shared: Shared::new(m) })
        })
    }

    /// Per-sample output shape of one layer called on tensors of per-sample `input_shapes`
    /// (the layer's JSON spec); raises what building it in a model would raise.
    #[staticmethod]
    fn layer_output_shape(spec_json: &str, input_shapes: Vec<Vec<Option<usize>>>) -> PyResult<Vec<Option<usize>>> {
        catch(|| {
            let layer: ferronet_core::layers::LayerSpec = parse("layer", spec_json)?;
            guard(|| ferronet_core::graph::Graph::layer_output_shape(&layer, &input_shapes))
        })
    }

    /// Checks a layer's JSON spec (its `get_config` with a `type`) without input shapes: the
    /// arguments' types, ranges and combinations. Raises `ValueError` naming the problem.
    #[staticmethod]
    fn validate_layer(spec_json: &str) -> PyResult<()> {
        let layer: ferronet_core::layers::LayerSpec = parse("layer", spec_json)?;
        guard(|| layer.validate())
    }

    /// Sets loss, optimizer and metrics from a JSON `CompileSpec`; optimizer state starts afresh.
    fn compile(&self, py: Python<'_>, spec_json: &str) -> PyResult<()> {
        catch(|| {
            let spec: CompileSpec = parse("compile", spec_json)?;
            if self.shared.fitting() {
                return Err(PyRuntimeError::new_err("compile() cannot run while fit() is training this model"));
            }
            self.shared.write(py, |m| guard(|| m.compile(&spec)))
        })
    }

    /// Per-sample output shape of each node (layer call), in graph order; `None` on the
    /// dimensions each call's data sets.
    #[getter]
    fn node_output_shapes(&self, py: Python<'_>) -> PyResult<Vec<Vec<Option<usize>>>> {
        catch(|| Ok(self.shared.read(py, |m| m.net.node_shapes())))
    }

    /// Per-sample shape of each model output (`None` on the dimensions each call's data sets).
    #[getter]
    fn output_shapes(&self, py: Python<'_>) -> PyResult<Vec<Vec<Option<usize>>>> {
        catch(|| Ok(self.shared.read(py, |m| m.net.outputs().iter().map(|&r| m.net.declared_shape(r)).collect())))
    }

    /// Per layer of the graph (spec order): the indices of its weight tensors.
    #[getter]
    fn layer_weight_indices(&self, py: Python<'_>) -> PyResult<Vec<Vec<usize>>> {
        catch(|| Ok(self.shared.read(py, |m| m.net.graph.layers.iter().map(|l| l.tensors.clone().collect()).collect())))
    }

    /// Freezes the layers flagged `True` (one flag per layer of the graph, spec order).
    fn set_frozen(&self, py: Python<'_>, frozen: Vec<bool>) -> PyResult<()> {
        catch(|| {
            // Every call of the model sets the flags; only a change needs the model alone.
            let same = self.shared.read(py, |m| m.net.graph.layers.iter().map(|l| l.frozen).eq(frozen.iter().copied()));
            if same {
                return Ok(());
            }
            self.shared.write(py, |m| guard(|| m.set_frozen(&frozen)))
        })
    }

    /// Per output, values per target row its loss expects (0 without a loss).
    fn target_widths(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        catch(|| self.shared.read(py, |m| guard(|| m.target_widths())))
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
            // Exclusive: the graph takes the data's shapes on unknown input dimensions.
            self.shared.write(py, |m| guard(|| m.validate(&data, what)))
        })
    }

    /// Marks the calling thread as training this model (`fit`); a second trainer is refused.
    fn begin_fit(&self) -> PyResult<()> {
        catch(|| self.shared.begin_fit())
    }

    /// Ends what `begin_fit` began.
    fn end_fit(&self) -> PyResult<()> {
        catch(|| {
            self.shared.end_fit();
            Ok(())
        })
    }

    /// Starts an epoch (draws the shuffled order).
    fn begin_epoch(&self, py: Python<'_>, rows: usize, batch_size: usize, shuffle: bool) -> PyResult<()> {
        catch(|| self.shared.write(py, |m| guard(|| m.begin_epoch(rows, batch_size, shuffle))))
    }

    /// Trains for about `seconds` (at least one step) without the GIL; `True` when the epoch ended.
    /// Between steps, threads waiting for the model go first.
    #[pyo3(signature = (x, y, sample_weight, seconds, max_steps=usize::MAX))]
    fn train_steps(
        &self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
        seconds: f64,
        max_steps: usize,
    ) -> PyResult<bool> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            let deadline = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
            self.shared
                .train(py, deadline, max_steps, |m, left, go_on| guard(|| m.train_steps_while(&data, left, go_on)))
        })
    }

    #[getter]
    fn steps_done(&self, py: Python<'_>) -> PyResult<usize> {
        catch(|| Ok(self.shared.read(py, |m| m.steps_done())))
    }

    #[getter]
    fn steps_total(&self, py: Python<'_>) -> PyResult<usize> {
        catch(|| Ok(self.shared.read(py, |m| m.steps_total())))
    }

    /// Running loss and metrics of the current epoch.
    fn epoch_logs(&self, py: Python<'_>) -> PyResult<Vec<(String, f64)>> {
        catch(|| Ok(logs_out(self.shared.read(py, |m| m.epoch_logs()))))
    }

    /// One optimizer step on this batch; returns its loss and metrics.
    #[pyo3(signature = (x, y, sample_weight))]
    fn train_on_batch(
        &self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
    ) -> PyResult<Vec<(String, f64)>> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            self.shared.write(py, |m| guard(|| m.train_on_batch(&data))).map(logs_out)
        })
    }

    /// Loss and metrics in inference mode (beside other threads' inference).
    #[pyo3(signature = (x, y, sample_weight, batch_size))]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
        sample_weight: Vec<Option<PyReadonlyArrayDyn<'_, f32>>>,
        batch_size: usize,
    ) -> PyResult<Vec<(String, f64)>> {
        catch(|| {
            let data = dataset(&x, &y, &sample_weight)?;
            self.shared.infer(py, |m, s, v| guard(|| m.evaluate_with(s, v, &data, batch_size))).map(logs_out)
        })
    }

    /// Forward pass (inference unless `training`): per output, a new float32 array
    /// `(rows, *output_shape)`. Inference runs beside other threads' inference; training mode
    /// (which moves normalization statistics and draws noise) has the model alone.
    #[pyo3(signature = (x, batch_size, training=false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        batch_size: usize,
        training: bool,
    ) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        catch(|| {
            let xs: Vec<_> = x.iter().map(|a| a.as_array()).collect();
            let shapes: Vec<&[usize]> = xs.iter().map(|a| a.shape().get(1..).unwrap_or(&[])).collect();
            let n = xs.first().and_then(|a| a.shape().first().copied()).unwrap_or(0);
            // Outputs are allocated fallibly (a request too large raises MemoryError) and handed to
            // numpy without a copy.
            let run = |m: &Model, scratch: Option<&mut Scratch>| -> Result<Vec<ArrayD<f32>>, Error> {
                let out_shapes: Vec<Vec<usize>> = match scratch {
                    Some(s) => m.output_shapes_with(s, &shapes)?,
                    None => (0..m.net.outputs().len()).map(|k| m.output_shape(k).to_vec()).collect(),
                };
                out_shapes
                    .into_iter()
                    .map(|shape| {
                        let full: Vec<usize> = std::iter::once(n).chain(shape).collect();
                        let len = full.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                        let len =
                            len.ok_or_else(|| Error::OutOfMemory(format!("predict: an output of shape {full:?}")))?;
                        let values = ferronet_core::alloc::filled(len, 0.0f32, "the predictions")?;
                        Ok(ArrayD::from_shape_vec(full, values).expect("the length is the shape's product"))
                    })
                    .collect()
            };
            let outs = if training {
                self.shared.write(py, |m| {
                    guard(|| {
                        m.set_input_shapes(&shapes)?;
                        let mut outs = run(m, None)?;
                        let mut views: Vec<_> = outs.iter_mut().map(|o| o.view_mut()).collect();
                        m.call_into(&xs, batch_size, true, &mut views)?;
                        Ok(outs)
                    })
                })?
            } else {
                self.shared.infer(py, |m, s, v| {
                    guard(|| {
                        let mut outs = run(m, Some(&mut *s))?;
                        let mut views: Vec<_> = outs.iter_mut().map(|o| o.view_mut()).collect();
                        m.predict_with(s, v, &xs, batch_size, &mut views)?;
                        Ok(outs)
                    })
                })?
            };
            let outs: Vec<Bound<'py, PyArrayDyn<f32>>> =
                outs.into_iter().map(|o| PyArrayDyn::from_owned_array(py, o)).collect();
            Ok(outs)
        })
    }

    /// Copies of every weight tensor, in Keras order (per layer: kernel, then bias), all taken
    /// between the same two training steps.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        catch(|| {
            let (_, shapes) = self.state_layout(py, false);
            Ok(self.arrays(py, &shapes, Self::copy_state, |_| ())?.0)
        })
    }

    /// What `save` writes, all from one moment between two training steps: the weights, the
    /// random streams and, with `optimizer`, the optimizer's slots (named) and step count.
    #[allow(clippy::type_complexity)]
    fn state<'py>(
        &self,
        py: Python<'py>,
        optimizer: bool,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, String, Vec<(String, Bound<'py, PyArrayDyn<f32>>)>, u64)> {
        catch(|| {
            let (names, shapes) = self.state_layout(py, optimizer);
            let (mut arrays, (weights, rng, iterations)) = self.arrays(py, &shapes, Self::copy_state, |m| {
                (m.net.params.tensors.len(), m.rng_state(), m.trainer().map_or(0, |t| t.iterations()))
            })?;
            let slots = names.into_iter().skip(weights).zip(arrays.split_off(weights)).collect();
            Ok((arrays, rng, slots, iterations))
        })
    }

    /// Names of the weight tensors (`layer/kernel`, `layer/bias`), in `get_weights` order.
    #[getter]
    fn weight_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        catch(|| Ok(self.shared.read(py, |m| m.net.params.tensors.iter().map(|t| t.name.clone()).collect())))
    }

    /// Whether each weight tensor is trained (false for moving statistics and preprocessing
    /// statistics, whatever the layer's `trainable` flag), in `get_weights` order.
    #[getter]
    fn weight_trainable(&self, py: Python<'_>) -> PyResult<Vec<bool>> {
        catch(|| {
            Ok(self.shared.read(py, |m| {
                m.net.params.tensors.iter().map(|t| t.role != ferronet_core::params::Role::NonTrainable).collect()
            }))
        })
    }

    /// Shapes of the weight tensors, in `get_weights` order.
    #[getter]
    fn weight_shapes(&self, py: Python<'_>) -> PyResult<Vec<Vec<usize>>> {
        catch(|| Ok(self.shared.read(py, |m| m.net.params.tensors.iter().map(|t| t.shape.clone()).collect())))
    }

    /// Replaces the weight tensors `indices[k]` with `values[k]` (same shapes required): every
    /// shape is checked before any value changes, and no other thread sees a partial update.
    fn set_weights(
        &self,
        py: Python<'_>,
        indices: Vec<usize>,
        values: Vec<PyReadonlyArrayDyn<'_, f32>>,
    ) -> PyResult<()> {
        catch(|| {
            if indices.len() != values.len() {
                return Err(PyValueError::new_err("set_weights: one index per array"));
            }
            let srcs = values
                .iter()
                .map(|v| v.as_slice().map_err(|_| PyValueError::new_err("weights must be C-contiguous float32")))
                .collect::<PyResult<Vec<_>>>()?;
            let shapes: Vec<Vec<usize>> = values.iter().map(|v| v.shape().to_vec()).collect();
            self.shared.write(py, |m| {
                let p = &mut m.net.params;
                for (&i, shape) in indices.iter().zip(&shapes) {
                    let t = p.tensors.get(i).ok_or_else(|| PyValueError::new_err(format!("no weight #{i}")))?;
                    if *shape != t.shape {
                        return Err(PyValueError::new_err(format!(
                            "weight '{}' has shape {:?}; got an array of shape {shape:?}",
                            t.name, t.shape
                        )));
                    }
                }
                for (&i, src) in indices.iter().zip(&srcs) {
                    let range = p.tensors[i].range();
                    p.values[range].copy_from_slice(src);
                }
                Ok(())
            })
        })
    }

    /// Replaces weight tensor `index` with the values of `value` (same shape required).
    fn set_weight(&self, py: Python<'_>, index: usize, value: PyReadonlyArrayDyn<'_, f32>) -> PyResult<()> {
        self.set_weights(py, vec![index], vec![value])
    }

    /// Saves every weight to a safetensors file at `path` (atomically), with string `metadata`.
    fn save_weights(&self, py: Python<'_>, path: PathBuf, metadata: HashMap<String, String>) -> PyResult<()> {
        catch(|| {
            self.shared.read(py, |m| guard(|| ferronet_core::persist::save_weights(&m.net.params, &path, metadata)))
        })
    }

    /// Loads every weight from a safetensors file; returns its metadata. Nothing changes on error.
    fn load_weights(&self, py: Python<'_>, path: PathBuf) -> PyResult<HashMap<String, String>> {
        catch(|| {
            let file = py.detach(|| guard(|| ferronet_core::persist::read_tensors(&path)))?;
            self.shared.write(py, |m| {
                guard(|| ferronet_core::persist::load_weights(&mut m.net.params, &file, &path))?;
                Ok(file.metadata)
            })
        })
    }

    /// Learning rate the next update will use (from the schedule, if any).
    #[getter]
    fn learning_rate(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        catch(|| Ok(self.shared.read(py, |m| m.trainer().map(|t| t.current_learning_rate()))))
    }

    /// Replaces the rate (and any schedule) with a constant.
    #[setter]
    fn set_learning_rate(&self, py: Python<'_>, lr: f64) -> PyResult<()> {
        catch(|| self.shared.write(py, |m| guard(|| m.trainer_mut().ok_or_else(not_compiled)?.set_learning_rate(lr))))
    }

    /// Learning rate used by the latest update.
    #[getter]
    fn last_learning_rate(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        catch(|| Ok(self.shared.read(py, |m| m.trainer().map(|t| t.last_learning_rate()))))
    }

    /// Optimizer state buffers as `(name, flat float32 array)`, in a fixed order.
    fn optimizer_slots<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyArrayDyn<f32>>)>> {
        catch(|| {
            let (names, shapes) = self.state_layout(py, true);
            let weights = self.shared.read(py, |m| m.net.params.tensors.len());
            let copy = |m: &Model, k: usize, dst: &mut [f32]| Self::copy_state(m, weights + k, dst);
            let (arrays, _) = self.arrays(py, &shapes[weights..], copy, |_| ())?;
            Ok(names.into_iter().skip(weights).zip(arrays).collect())
        })
    }

    /// Restores optimizer state saved from `optimizer_slots` and `iterations`.
    fn set_optimizer_state(
        &self,
        py: Python<'_>,
        iterations: u64,
        slots: Vec<(String, PyReadonlyArrayDyn<'_, f32>)>,
    ) -> PyResult<()> {
        catch(|| {
            let owned: Vec<(String, Vec<f32>)> =
                named_slices(&slots, "optimizer slot")?.into_iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
            self.shared.write(py, |m| guard(|| m.trainer_mut().ok_or_else(not_compiled)?.restore(iterations, &owned)))
        })
    }

    /// The shuffling and noise random streams as JSON (saved with the model).
    #[getter]
    fn rng_state(&self, py: Python<'_>) -> PyResult<String> {
        catch(|| Ok(self.shared.read(py, |m| m.rng_state())))
    }

    #[setter]
    fn set_rng_state(&self, py: Python<'_>, json: &str) -> PyResult<()> {
        catch(|| self.shared.write(py, |m| guard(|| m.set_rng_state(json))))
    }

    /// Whether per-layer gradient norms are recorded during `fit`.
    #[getter]
    fn grad_monitor(&self, py: Python<'_>) -> PyResult<bool> {
        catch(|| Ok(self.shared.read(py, |m| m.grad_monitor.is_some())))
    }

    #[setter]
    fn set_grad_monitor(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        catch(|| {
            self.shared.write(py, |m| {
                m.grad_monitor = on.then(|| ferronet_core::model::GradMonitor::new(&m.net.params));
            });
            Ok(())
        })
    }

    /// Mean L2 norm of each layer's weight gradient over the steps since the last call.
    fn take_grad_norms(&self, py: Python<'_>) -> PyResult<Vec<(String, f64)>> {
        catch(|| Ok(self.shared.write(py, |m| m.grad_monitor.as_mut().map(|g| g.take()).unwrap_or_default())))
    }

    /// Mean loss over `x, y` as one batch (training mode, fixed noise) and the gradient of every
    /// weight, in `get_weights` order: what gradient checks compare with finite differences.
    fn compute_gradients<'py>(
        &self,
        py: Python<'py>,
        x: Vec<PyReadonlyArrayDyn<'_, f32>>,
        y: Vec<PyReadonlyArrayDyn<'_, f32>>,
    ) -> PyResult<(f64, Vec<Bound<'py, PyArrayDyn<f32>>>)> {
        catch(|| {
            let data = dataset(&x, &y, &[])?;
            let grads = self.weight_shapes(py)?.iter().map(|s| zeros(py, s)).collect::<PyResult<Vec<_>>>()?;
            let loss = {
                let mut rws: Vec<_> = grads.iter().map(|a| a.readwrite()).collect();
                let mut views = rws.iter_mut().map(contiguous).collect::<PyResult<Vec<_>>>()?;
                // One exclusive section: no other step may overwrite the gradients before the copy.
                self.shared.write(py, |m| {
                    guard(|| {
                        let loss = m.compute_gradients(&data)?;
                        let p = &m.net.params;
                        views.iter_mut().zip(&p.tensors).try_for_each(|(v, t)| fill(v, &p.grads[t.range()]))?;
                        Ok(loss)
                    })
                })?
            };
            Ok((loss, grads))
        })
    }

    /// Whether `fit` stops, without applying it, at the first batch with a NaN or infinite loss.
    #[getter]
    fn stop_on_nan(&self, py: Python<'_>) -> PyResult<bool> {
        catch(|| Ok(self.shared.read(py, |m| m.stop_on_nan)))
    }

    #[setter]
    fn set_stop_on_nan(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        catch(|| {
            self.shared.write(py, |m| m.stop_on_nan = on);
            Ok(())
        })
    }

    /// Step of the current epoch at which a non-finite loss stopped training, if any.
    #[getter]
    fn nan_at(&self, py: Python<'_>) -> PyResult<Option<usize>> {
        catch(|| Ok(self.shared.read(py, |m| m.nan_at())))
    }

    /// Optimizer steps taken since `compile`.
    #[getter]
    fn iterations(&self, py: Python<'_>) -> PyResult<u64> {
        catch(|| Ok(self.shared.read(py, |m| m.trainer().map_or(0, |t| t.iterations()))))
    }
}
