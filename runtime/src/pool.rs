//! The thread pool behind compiled parallel loops: [`kiln_parallel_for`] is the parallel-for a
//! kiln module calls once it is given to the module's `M_set_parallel_for` (bundles do this
//! when they open). The caller chooses the thread count with [`set_threads`] (1 by default: a
//! program opts in to threads).
//!
//! A dispatch splits `[0, n)` into chunks of at least `grain` iterations; the calling thread and
//! the workers take chunks from an atomic counter until none is left, and the call returns when
//! every chunk has finished. Chunk boundaries do not change results: kiln only marks loops whose
//! iterations write disjoint outputs. One dispatch runs at a time; a dispatch that finds the pool
//! busy (another thread's call, or a parallel loop inside a chunk) runs its loop serially.
//!
//! Workers wait for the next job, and the caller for the workers, by spinning for up to
//! [`SPIN`] before sleeping on a condition variable: a training step dispatches hundreds of
//! small loops (each step of an RNN's scan a few), and waking a sleeping thread costs tens of
//! microseconds, which made the RNN gradient slower on 2 threads than on 1.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a worker waits for the next job, and a caller for the workers, before sleeping.
const SPIN: Duration = Duration::from_micros(100);

/// A parallel loop's body: runs iterations `[begin, end)` with its context.
pub type Body = unsafe extern "C" fn(ctx: *mut c_void, begin: i64, end: i64);

/// The function type of [`kiln_parallel_for`], as a module's setter takes it.
pub type ParallelFor = unsafe extern "C" fn(body: Body, ctx: *mut c_void, n: i64, grain: i64);

/// One dispatched loop.
#[derive(Clone, Copy)]
struct Job {
    body: Body,
    ctx: *mut c_void,
    n: i64,
    chunk: i64,
}

// SAFETY: the context pointer is only used while its dispatch waits for every worker.
unsafe impl Send for Job {}

struct State {
    job: Option<Job>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Incremented for every job, under `state`'s lock; workers run each generation once, and
    /// spinning workers watch it without the lock.
    generation: AtomicU64,
    /// Workers that have not finished the current generation.
    running: AtomicUsize,
    wake: Condvar,
    done: Condvar,
    next: AtomicI64,
}

/// Spins until `ready` holds or [`SPIN`] has passed; whether it holds.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
    }
}

struct Pool {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// A pool of `threads - 1` workers, or fewer if the system refuses to start more.
    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { job: None, stop: false }),
            generation: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            wake: Condvar::new(),
            done: Condvar::new(),
            next: AtomicI64::new(0),
        });
        let workers = (1..threads)
            .map_while(|_| {
                let shared = shared.clone();
                std::thread::Builder::new().spawn(move || work(&shared)).ok()
            })
            .collect();
        Pool { shared, workers }
    }

    /// Runs `job` on every worker and the calling thread; returns when all chunks are done.
    fn run(&self, job: Job) {
        let s = &self.shared;
        s.next.store(0, Ordering::Relaxed);
        {
            let mut state = s.state.lock().unwrap_or_else(|e| e.into_inner());
            state.job = Some(job);
            s.running.store(self.workers.len(), Ordering::Release);
            s.generation.fetch_add(1, Ordering::Release);
        }
        s.wake.notify_all();
        take_chunks(s, job);
        let finished = || s.running.load(Ordering::Acquire) == 0;
        let mut state = s.state.lock().unwrap_or_else(|e| e.into_inner());
        if !finished() {
            drop(state);
            spin_until(finished);
            state = s.state.lock().unwrap_or_else(|e| e.into_inner());
        }
        // A worker that brings `running` to 0 notifies under the lock: checked under it here,
        // the notification cannot come between the check and the wait.
        while !finished() {
            state = s.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.job = None;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn take_chunks(s: &Shared, job: Job) {
    loop {
        let begin = s.next.fetch_add(job.chunk, Ordering::Relaxed);
        if begin >= job.n {
            return;
        }
        // SAFETY: the compiled body accepts any sub-range of [0, n).
        unsafe { (job.body)(job.ctx, begin, (begin + job.chunk).min(job.n)) };
    }
}

fn work(s: &Shared) {
    let mut seen = 0;
    loop {
        // The next job often comes within microseconds: watch for it before sleeping.
        spin_until(|| s.generation.load(Ordering::Acquire) != seen);
        let job = {
            let mut state = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation.load(Ordering::Acquire) == seen && !state.stop {
                state = s.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.stop {
                return;
            }
            seen = s.generation.load(Ordering::Acquire);
            state.job
        };
        if let Some(job) = job {
            take_chunks(s, job);
        }
        if s.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _state = s.state.lock().unwrap_or_else(|e| e.into_inner());
            s.done.notify_all();
        }
    }
}

/// The pool (None: one thread) behind a lock held for a whole dispatch.
fn pool() -> &'static Mutex<Option<Pool>> {
    static POOL: OnceLock<Mutex<Option<Pool>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(None))
}

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// The most threads a pool runs: more than any machine kiln targets has cores, and few enough
/// that asking for an absurd count (100,000) does not exhaust the process.
pub const MAX_THREADS: usize = 1024;

/// Sets how many threads (the caller's included) run parallel loops from now on; 0 means one
/// per available core. At most [`MAX_THREADS`], and fewer if the system refuses to start
/// more. Waits for a running dispatch to finish; returns the count now in use.
pub fn set_threads(threads: usize) -> usize {
    let wanted = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
    *pool = None;
    *pool = (wanted > 1).then(|| Pool::new(wanted.min(MAX_THREADS)));
    let threads = pool.as_ref().map_or(1, |p| p.workers.len() + 1);
    THREADS.store(threads, Ordering::Relaxed);
    threads
}

/// The thread count set by [`set_threads`].
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// The parallel-for given to compiled modules: calls `body` on disjoint chunks covering
/// `[0, n)`, each at least `grain` iterations except perhaps the last, and returns when all
/// have finished.
///
/// # Safety
/// `body` must be safe to call on any sub-range of `[0, n)` with `ctx`, from any thread and
/// concurrently on disjoint ranges, as kiln's compiled loop bodies are.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_parallel_for(body: Body, ctx: *mut c_void, n: i64, grain: i64) {
    if n <= 0 {
        return;
    }
    let serial = || unsafe { body(ctx, 0, n) };
    let Ok(guard) = pool().try_lock() else { return serial() };
    let Some(p) = guard.as_ref() else { return serial() };
    let threads = p.workers.len() as i64 + 1;
    // Chunks of `grain` iterations (the compiler sizes it to amortize a dispatch), but no more
    // than 16 per thread: a loop of a few heavy iterations (tiles of a product) is shared one
    // iteration at a time, so that threads finish together.
    let chunk = grain.max(1).max((n + 16 * threads - 1) / (16 * threads));
    if chunk >= n {
        return serial();
    }
    p.run(Job { body, ctx, n, chunk });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    unsafe extern "C" fn mark(ctx: *mut c_void, begin: i64, end: i64) {
        let hits = unsafe { &*(ctx as *const Vec<AtomicU64>) };
        for i in begin..end {
            hits[i as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_iteration_runs_once_at_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            set_threads(threads);
            for (n, grain) in [(1, 1), (7, 1), (1000, 3), (1000, 1000), (4097, 16)] {
                let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                unsafe { kiln_parallel_for(mark, &hits as *const _ as *mut c_void, n, grain) };
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, n {n}");
            }
        }
        set_threads(1);
    }

    /// Dispatches back to back, as a training step's many small loops come: workers still
    /// spinning from one job take the next, and every iteration of every job runs once.
    #[test]
    fn back_to_back_dispatches_each_run_every_iteration_once() {
        set_threads(3);
        let hits: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
        for _ in 0..10_000 {
            unsafe { kiln_parallel_for(mark, &hits as *const _ as *mut c_void, 64, 1) };
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 10_000));
        set_threads(1);
    }
}
