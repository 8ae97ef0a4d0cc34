//! `ferronet._core`: the PyO3 boundary. One coarse class (`Model`, a compiled network) and a few
//! functions; every heavy call borrows numpy buffers without copying and releases the GIL.
//! Panics never cross into Python: they are caught here and raised as `ferronet.FerronetError`.

mod activation;
mod convert;
mod loss;
mod model;
mod schedule;
mod shared;
mod tensor_file;

use pyo3::prelude::*;

use convert::{guard, FerronetError};

/// Sets the number of worker threads used by every model. Any integer is accepted here so that
/// an out-of-range one (negative, or beyond a machine word) gets the engine's `ValueError`
/// rather than the argument conversion's `OverflowError`.
#[pyfunction]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    if n.is_instance_of::<pyo3::types::PyBool>() {
        return Err(pyo3::exceptions::PyTypeError::new_err("set_num_threads: n must be an integer, not a bool"));
    }
    if !n.is_instance_of::<pyo3::types::PyInt>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!("set_num_threads: n must be an integer; got {n}")));
    }
    match n.extract::<usize>() {
        Ok(n) => guard(|| ferronet_core::threads::set_num_threads(n)),
        Err(_) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "set_num_threads: n must be from 1 to {}; got {n}",
            ferronet_core::threads::MAX_THREADS
        ))),
    }
}

/// Number of worker threads in use.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    guard(|| Ok(ferronet_core::threads::num_threads()))
}

/// The CPU as the engine sees it: vendor, model name, SIMD level, the GEMM kernel family picked
/// (`FERRONET_GEMM` may force one), whether bf16 products run on bf16 instructions (`bf16`),
/// logical CPUs and cache sizes (KiB, `None` when unknown).
#[pyfunction]
fn cpu_info(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let i = ferronet_core::cpu::info();
    let d = pyo3::types::PyDict::new(py);
    d.set_item("vendor", i.vendor)?;
    d.set_item("model", i.model)?;
    d.set_item("simd", i.simd)?;
    d.set_item("kernels", ferronet_core::gemm::Kernel::get().name())?;
    d.set_item("bf16", ferronet_core::gemm::bf16_native())?;
    d.set_item("logical_cpus", i.logical_cpus)?;
    d.set_item("l1d_kib", i.l1d_kib)?;
    d.set_item("l2_kib", i.l2_kib)?;
    d.set_item("l3_kib", i.l3_kib)?;
    Ok(d)
}

/// The measured fp32 peak of `threads` threads in GFLOPS (FMA chains for about `seconds`).
#[pyfunction]
#[pyo3(signature = (threads, seconds=0.2))]
fn measure_fp32_peak(py: Python<'_>, threads: usize, seconds: f64) -> PyResult<f64> {
    py.detach(|| guard(|| ferronet_core::cpu::measure_fp32_peak(threads, seconds)))
}

/// Why `FERRONET_NUM_THREADS` was ignored, if it is set but unusable (warned at import).
#[pyfunction]
fn num_threads_warning() -> PyResult<Option<String>> {
    guard(|| Ok(ferronet_core::threads::env_threads().1))
}

/// Why `FERRONET_WAIT_POLICY` was ignored, if it is set but unusable (warned at import).
#[pyfunction]
fn wait_policy_warning() -> PyResult<Option<String>> {
    guard(|| Ok(ferronet_core::threads::env_wait_policy().1))
}

/// Limits the weights of models built on this thread to `budget` values (`None`: no limit);
/// returns the previous limit. `load_model` sets it to what the file holds.
#[pyfunction]
#[pyo3(signature = (budget=None))]
fn set_weight_budget(budget: Option<usize>) -> PyResult<Option<usize>> {
    guard(|| Ok(ferronet_core::params::set_budget(budget)))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FerronetError", m.py().get_type::<FerronetError>())?;
    m.add_class::<model::PyModel>()?;
    m.add_function(wrap_pyfunction!(activation::activation_forward, m)?)?;
    m.add_function(wrap_pyfunction!(loss::loss_value, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::schedule_value, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_file::read_tensor_file, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_file::write_tensor_file, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_info, m)?)?;
    m.add_function(wrap_pyfunction!(measure_fp32_peak, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads_warning, m)?)?;
    m.add_function(wrap_pyfunction!(wait_policy_warning, m)?)?;
    m.add_function(wrap_pyfunction!(set_weight_budget, m)?)?;
    Ok(())
}
