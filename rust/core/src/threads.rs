//! One place that sizes the worker threads. Every parallel region of the engine (GEMM splits,
//! element-wise passes, optimizer sweeps) runs inside [`install`], so `set_num_threads(n)` is
//! honoured exactly and nothing oversubscribes the machine.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

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
    let cores = cores();
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

/// How idle workers wait while a long engine call runs (`FERRONET_WAIT_POLICY`, named after
/// OpenMP's `OMP_WAIT_POLICY`): `active` (the default) keeps them looking for work (see
/// [`install_busy`]), `passive` lets them sleep as rayon does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPolicy {
    Active,
    Passive,
}

/// The policy from `FERRONET_WAIT_POLICY`, and why a value was ignored.
pub fn env_wait_policy() -> (WaitPolicy, Option<String>) {
    parse_wait_policy(std::env::var("FERRONET_WAIT_POLICY").ok().as_deref())
}

fn parse_wait_policy(value: Option<&str>) -> (WaitPolicy, Option<String>) {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("passive") => (WaitPolicy::Passive, None),
        None | Some("") => (WaitPolicy::Active, None),
        Some(v) if v.eq_ignore_ascii_case("active") => (WaitPolicy::Active, None),
        Some(v) => (
            WaitPolicy::Active,
            Some(format!("FERRONET_WAIT_POLICY={v:?} is neither \"active\" nor \"passive\"; using \"active\"")),
        ),
    }
}

fn wait_policy() -> WaitPolicy {
    static POLICY: OnceLock<WaitPolicy> = OnceLock::new();
    *POLICY.get_or_init(|| env_wait_policy().0)
}

/// How long a spinning worker looks for work in vain before it leaves the rest of the call to
/// rayon's sleeping idle loop: a model whose steps have no parallel region costs a core that
/// long, not the whole call.
const MAX_IDLE_SPIN: Duration = Duration::from_millis(1);

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

thread_local! {
    /// Whether this thread leads a call whose workers are kept awake (a nested call adds no
    /// second team).
    static LEADING: Cell<bool> = const { Cell::new(false) };
}

/// [`install`] for a call that runs many parallel regions back to back (a slice of training
/// steps, a prediction over many batches): while `f` runs, the pool's other workers stay awake
/// and keep looking for the tasks `f`'s regions push, instead of falling asleep between regions.
///
/// A region then starts in the time an awake thread takes to steal its task, where a sleeping
/// one must first be woken through the kernel (microseconds, more in a virtual machine), and a
/// step's serial parts (the loss, the batch gather) no longer put the workers to sleep: the one
/// parallel region per call that an OpenMP runtime approximates by spinning between its regions.
/// Measured on 2 threads of a Zen 4: `mlp_mnist` +3-4% (+3-9% under `mixed_bfloat16`),
/// `mlp_bn_dropout` +4-12%, `cnn_lenet` +3-6% (`docs/performance.md`).
///
/// A looking worker yields its core between looks, so a thread that shares it still runs, and
/// after [`MAX_IDLE_SPIN`] without finding work it goes back to rayon's sleeping idle loop for
/// the rest of the call. It looks only when each worker has a core of its own and the policy is
/// `active`.
pub fn install_busy<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    install_busy_if(true, f)
}

/// [`install_busy`] when `busy`, else [`install`]: a call of a single batch is over before
/// spinning would pay for waking the workers up front.
pub fn install_busy_if<R: Send>(busy: bool, f: impl FnOnce() -> R + Send) -> R {
    if !busy {
        return install(f);
    }
    install(|| keep_workers_busy(wait_policy(), f))
}

/// Runs `f` on the current thread, with the other workers of its pool kept awake when `policy`
/// and the core count allow (called from inside a pool; elsewhere it only runs `f`).
fn keep_workers_busy<R>(policy: WaitPolicy, f: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    let spin = policy == WaitPolicy::Active && threads > 1 && threads <= cores() && !LEADING.get();
    match rayon::current_thread_index() {
        Some(leader) if spin => with_workers_spinning(leader, f),
        _ => f(),
    }
}

/// Runs `f` on the current worker (`leader`) while every other worker of its pool looks for
/// work (`rayon::yield_now` runs one pending task, if any).
///
/// The lookers are spawned, not scoped: `f` never waits for them, neither to start (an idle
/// virtual CPU can take a hundred microseconds to wake) nor to stop. A looker that starts late
/// finds its call over and returns.
fn with_workers_spinning<R>(leader: usize, f: impl FnOnce() -> R) -> R {
    /// Ends the looking when `f` returns or unwinds.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
            LEADING.set(false);
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    rayon::spawn_broadcast(move |worker| {
        // The leader meets its own copy once it is idle again: there is nothing to look for.
        if worker.index() == leader {
            return;
        }
        let mut idle_since: Option<Instant> = None;
        while !flag.load(Ordering::Acquire) {
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle_since = None;
                continue;
            }
            if idle_since.get_or_insert_with(Instant::now).elapsed() > MAX_IDLE_SPIN {
                break;
            }
            std::thread::yield_now();
        }
    });
    LEADING.set(true);
    let _release = Release(done);
    f()
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

    #[test]
    fn the_wait_policy_reads_active_or_passive_and_names_anything_else() {
        assert_eq!(parse_wait_policy(None), (WaitPolicy::Active, None));
        assert_eq!(parse_wait_policy(Some("")), (WaitPolicy::Active, None));
        assert_eq!(parse_wait_policy(Some(" ACTIVE ")), (WaitPolicy::Active, None));
        assert_eq!(parse_wait_policy(Some("Passive")), (WaitPolicy::Passive, None));
        let (policy, why) = parse_wait_policy(Some("spin"));
        assert_eq!(policy, WaitPolicy::Active);
        assert!(why.is_some_and(|w| w.contains("FERRONET_WAIT_POLICY=\"spin\"")));
    }

    fn two_threads() -> rayon::ThreadPool {
        ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    /// Sums of squares of 0..n in 64 parallel blocks, added in block order.
    fn blockwise_sum(n: u64) -> u64 {
        use rayon::prelude::*;
        let blocks: Vec<u64> =
            (0..64u64).into_par_iter().map(|b| (b * n / 64..(b + 1) * n / 64).map(|i| i * i).sum()).collect();
        blocks.iter().sum()
    }

    #[test]
    fn busy_workers_run_the_regions_of_the_call_and_nested_calls() {
        let want = blockwise_sum(1 << 20);
        for policy in [WaitPolicy::Active, WaitPolicy::Passive] {
            let (right, still_leading) = two_threads().install(|| {
                let right = keep_workers_busy(policy, || {
                    let inner = keep_workers_busy(policy, || blockwise_sum(1 << 20));
                    (0..20).map(|_| blockwise_sum(1 << 20)).all(|s| s == want) && inner == want
                });
                (right, LEADING.get())
            });
            assert!(right && !still_leading, "{policy:?}");
        }
    }

    #[test]
    fn a_panic_inside_a_busy_call_reaches_the_caller_and_stops_the_spinning() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = two_threads();
            let caught = pool.install(|| {
                std::panic::catch_unwind(|| keep_workers_busy(WaitPolicy::Active, || panic!("inside the step")))
            });
            // The pool still works afterwards: no worker is left spinning for ever.
            let after = pool.install(|| keep_workers_busy(WaitPolicy::Active, || blockwise_sum(1000)));
            tx.send((caught.is_err(), after == blockwise_sum(1000))).unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the busy call hung after a panic");
        assert_eq!(got, (true, true));
    }
}
