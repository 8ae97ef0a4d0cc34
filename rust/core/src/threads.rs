//! One place that sizes the worker threads. Every parallel region of the engine (GEMM splits,
//! element-wise passes, optimizer sweeps) runs inside [`install`], so `set_num_threads(n)` is
//! honoured exactly and nothing oversubscribes the machine.

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{invalid, Result};

/// The pool and the process that started its threads.
struct Pool {
    threads: Arc<ThreadPool>,
    pid: u32,
}

static POOL: RwLock<Option<Pool>> = RwLock::new(None);

/// The most worker threads a pool may have: more is a typo, not a machine, and starting a
/// huge number of threads takes minutes before it fails.
pub const MAX_THREADS: usize = 1024;

/// Threads used when the user has not chosen: `FERRONET_NUM_THREADS`, else every core; and,
/// when the variable is set but unusable, why it was ignored.
pub fn env_threads() -> (usize, Option<String>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("FERRONET_NUM_THREADS") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => (n, None),
            _ => (
                cores,
                Some(format!(
                    "FERRONET_NUM_THREADS={v:?} is not a whole number from 1 to {MAX_THREADS}; using {cores} \
                     threads (every core)"
                )),
            ),
        },
        _ => (cores, None),
    }
}

fn default_threads() -> usize {
    env_threads().0
}

fn build(n: usize) -> Result<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("ferronet-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| invalid(format!("could not start {n} worker threads: {e}")))
}

/// The current pool, built on first use, and again in a forked child: `fork()` copies the pool
/// but not its threads, so work sent to it there would wait for ever.
pub fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    if let Some(p) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|p| p.pid == pid) {
        return p.threads.clone();
    }
    let mut guard = POOL.write().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref().filter(|p| p.pid == pid) {
        return p.threads.clone();
    }
    // A pool from before fork() keeps its size; it is never dropped here, since dropping would
    // signal worker threads that do not exist in this process.
    let inherited = guard.take().map(|p| {
        let n = p.threads.current_num_threads();
        std::mem::forget(p);
        n
    });
    let n = inherited.unwrap_or_else(default_threads);
    let threads = build(n).or_else(|_| build(1)).expect("a one-thread pool can always be built");
    *guard = Some(Pool { threads: threads.clone(), pid });
    threads
}

/// Replaces the pool with one of `n` threads. Work already running keeps its old pool.
pub fn set_num_threads(n: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(invalid(format!("set_num_threads: n must be from 1 to {MAX_THREADS}; got {n}")));
    }
    let threads = build(n)?;
    let pid = std::process::id();
    let old = POOL.write().unwrap_or_else(|e| e.into_inner()).replace(Pool { threads, pid });
    if let Some(old) = old.filter(|p| p.pid != pid) {
        std::mem::forget(old);
    }
    Ok(())
}

/// Number of threads of the current pool.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Runs `f` inside the pool so every nested rayon call uses its threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_or_too_many_threads_are_rejected_at_once() {
        assert!(set_num_threads(0).is_err());
        let start = std::time::Instant::now();
        assert!(set_num_threads(MAX_THREADS + 1).is_err());
        assert!(set_num_threads(usize::MAX).is_err());
        assert!(start.elapsed().as_secs() < 1);
    }
}
