//! One engine model shared by Python threads, with Keras's semantics: any number of threads may
//! predict, evaluate, read or save the weights while one trains.
//!
//! - The model sits behind a readers-writer lock. Training steps and every call that changes
//!   the model take it exclusively; reads share it. Locks are always taken with the GIL
//!   released, so a thread waiting here never blocks Python (nor a callback that predicts).
//! - Inference holds the lock shared and runs on a [`Scratch`] (its own buffers and weight
//!   copy) from a small pool: concurrent predictions run in parallel. The copy is refreshed only
//!   when `version` (bumped by every exclusive call) says the weights may have changed.
//! - A training slice yields between steps as soon as another thread waits for the model, so a
//!   prediction during `fit` waits for one step, not a whole slice, and sees the weights as they
//!   are between two steps.
//! - One `fit` at a time runs on a model (`trainer`): not two threads, nor a callback of a
//!   running `fit`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use ferronet_core::model::Scratch;
use ferronet_core::Model;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Scratches kept for reuse; beyond that many concurrent calls, each allocates its own.
const IDLE_SCRATCHES: usize = 4;

/// How long a trainer that yielded waits for the waiting threads to get the lock.
const YIELD_WAIT: Duration = Duration::from_millis(2);

pub struct Shared {
    model: RwLock<Model>,
    /// Bumped under the exclusive lock: names the weights a scratch copied.
    version: AtomicU64,
    /// Threads blocked on `model`.
    waiting: AtomicUsize,
    scratches: Mutex<Vec<Scratch>>,
    trainer: Mutex<Option<ThreadId>>,
}

impl Shared {
    pub fn new(model: Model) -> Self {
        Self {
            model: RwLock::new(model),
            version: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            scratches: Mutex::new(Vec::new()),
            trainer: Mutex::new(None),
        }
    }

    fn lock_read(&self) -> RwLockReadGuard<'_, Model> {
        if let Ok(g) = self.model.try_read() {
            return g;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = self.model.read().unwrap_or_else(PoisonError::into_inner);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        g
    }

    fn lock_write(&self) -> RwLockWriteGuard<'_, Model> {
        let g = match self.model.try_write() {
            Ok(g) => g,
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let g = self.model.write().unwrap_or_else(PoisonError::into_inner);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                g
            }
        };
        self.version.fetch_add(1, Ordering::SeqCst);
        g
    }

    /// Runs `f` on the model, shared with other readers, without the GIL.
    pub fn read<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Model) -> T + Send) -> T {
        py.detach(|| f(&self.lock_read()))
    }

    /// Runs `f` on the model alone, without the GIL.
    pub fn write<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Model) -> T + Send) -> T {
        py.detach(|| f(&mut self.lock_write()))
    }

    /// Runs `f` (a prediction or an evaluation) on the model shared with other readers, with a
    /// scratch and the current weight version, without the GIL.
    pub fn infer<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Model, &mut Scratch, u64) -> T + Send) -> T {
        py.detach(|| {
            let mut scratch = self.scratches.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
            let out = {
                let model = self.lock_read();
                f(&model, &mut scratch, self.version.load(Ordering::SeqCst))
            };
            let mut idle = self.scratches.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_SCRATCHES {
                idle.push(scratch);
            }
            out
        })
    }

    /// Trains until `step` reports the epoch done, `max_steps` steps ran or `deadline` passed,
    /// letting waiting threads in between steps. `step(model, max_steps, go_on)` runs steps
    /// while `go_on()` holds and returns whether the epoch is over.
    pub fn train<E: Send>(
        &self,
        py: Python<'_>,
        deadline: Instant,
        max_steps: usize,
        step: impl Fn(&mut Model, usize, &(dyn Fn() -> bool + Sync)) -> Result<bool, E> + Send + Sync,
    ) -> Result<bool, E> {
        let go_on = || Instant::now() < deadline && self.waiting.load(Ordering::SeqCst) == 0;
        py.detach(|| {
            let mut left = max_steps.max(1);
            loop {
                let (done, taken) = {
                    let mut model = self.lock_write();
                    let before = model.steps_done();
                    let done = step(&mut model, left, &go_on)?;
                    (done, model.steps_done().saturating_sub(before))
                };
                left = left.saturating_sub(taken.max(1));
                if done || left == 0 || Instant::now() >= deadline {
                    return Ok(done);
                }
                // Another thread waits: let it take the lock before the next step.
                let since = Instant::now();
                while self.waiting.load(Ordering::SeqCst) > 0 && since.elapsed() < YIELD_WAIT {
                    std::thread::yield_now();
                }
            }
        })
    }

    /// Marks the calling thread as the one training the model; refuses a second trainer, and a
    /// `fit` nested in a callback of the running one.
    pub fn begin_fit(&self) -> PyResult<()> {
        let me = std::thread::current().id();
        let mut trainer = self.trainer.lock().unwrap_or_else(PoisonError::into_inner);
        match *trainer {
            None => {
                *trainer = Some(me);
                Ok(())
            }
            // Nested training would run the inner epochs inside the outer one's and cut it short.
            Some(t) if t == me => Err(PyRuntimeError::new_err(
                "fit() was called from a callback of a running fit() on the same model; training \
                 cannot be nested (predict and evaluate may be called from callbacks)",
            )),
            Some(_) => Err(PyRuntimeError::new_err(
                "fit() is already running on this model in another thread; one model trains in one \
                 thread at a time (other threads may predict, evaluate or save meanwhile)",
            )),
        }
    }

    /// Ends what [`Shared::begin_fit`] began.
    pub fn end_fit(&self) {
        *self.trainer.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether a `fit` is running on this model.
    pub fn fitting(&self) -> bool {
        self.trainer.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}
