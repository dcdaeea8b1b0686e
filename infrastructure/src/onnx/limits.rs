//! What a model may take from the server: memory, through a capped ONNX Runtime arena
//! that every session allocates from, and time, through a watchdog that stops a session
//! run past its deadline (issue 15).
//!
//! What the cap covers, as ONNX Runtime 1.31 works: every allocation of the CPU execution
//! provider's allocator, which is where initializers, the tensors a run produces and
//! kernels' scratch buffers come from. Not covered: memory a kernel takes from the system
//! allocator directly (small, per-kernel buffers), the graph ONNX Runtime builds from the
//! protobuf (bounded by the upload's size), and constant folding at load, which uses a
//! plain allocator of its own; the sessions run with constant folding off (see
//! `session_options`), so a graph's constants are computed at run time, inside the cap.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ort::AsPointer as _;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::RunOptions;

/// What one process lets its models take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimits {
    /// Bytes ONNX Runtime may allocate for all the sessions of the process together:
    /// their weights and the tensors of the runs under way.
    pub max_memory_bytes: usize,
    /// The longest one session run may take.
    pub run_timeout: Duration,
    /// The name of the thread that stops runs. `serve` lowers the priority of every
    /// thread whose name does not start like the model threads', and the watchdog must
    /// get a CPU while a model hogs them: the server names it like them.
    pub watchdog_thread: String,
}

impl Default for ModelLimits {
    fn default() -> Self {
        Self { max_memory_bytes: 1024 * 1024 * 1024, run_timeout: Duration::from_secs(5), watchdog_thread: "onnx-watchdog".into() }
    }
}

/// Registers a CPU arena capped at `max_bytes` with the environment; sessions built with
/// `session.use_env_allocators` take their CPU memory from it, and an allocation past
/// the cap fails the run (or the load) with an error instead of growing the process.
/// `ort` has no safe wrapper for this, hence the raw C API.
pub(super) fn cap_cpu_memory(env: &ort::environment::Environment, max_bytes: usize) -> Result<(), String> {
    let api = ort::api();
    let mut arena: *mut ort::sys::OrtArenaCfg = std::ptr::null_mut();
    // -1: ONNX Runtime's defaults for the extend strategy, initial chunk and dead bytes.
    // SAFETY: `CreateArenaCfg` only writes the new configuration to `arena`; the status it
    // returns is taken over by `result_from_status`.
    unsafe { ort::Error::result_from_status((api.CreateArenaCfg)(max_bytes, -1, -1, -1, &mut arena)) }
        .map_err(|e| format!("ONNX Runtime arena: {e}"))?;
    let registered = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default)
        .map_err(|e| format!("ONNX Runtime arena: {e}"))
        .and_then(|info| {
            // SAFETY: the environment, the memory info and the arena configuration are live
            // for the call, which copies what it keeps; the environment lives as long as
            // the process (a `OnceLock`), so the allocator it owns outlives every session.
            unsafe { ort::Error::result_from_status((api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), arena)) }
                .map_err(|e| format!("ONNX Runtime arena: {e}"))
        });
    // SAFETY: created above and no longer used: the registered allocator copied it.
    unsafe { (api.ReleaseArenaCfg)(arena) };
    registered
}

/// Stops session runs that pass their deadline. ONNX Runtime looks at a run's terminate
/// flag before each node it executes (and so before each iteration of a Loop's body): a
/// stopped run ends at the next node, and one node that computes for long is not cut
/// short.
pub(super) struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    runs: Mutex<Runs>,
    wake: Condvar,
}

#[derive(Default)]
struct Runs {
    next: u64,
    /// Runs under way: their deadline and the options that stop them.
    watched: HashMap<u64, (Instant, Arc<RunOptions>)>,
    closed: bool,
}

impl Shared {
    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Watchdog {
    pub(super) fn start(thread_name: &str) -> Result<Self, String> {
        let shared = Arc::new(Shared { runs: Mutex::default(), wake: Condvar::new() });
        let watched = shared.clone();
        std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || watch(&watched))
            .map_err(|e| format!("cannot start the model watchdog: {e}"))?;
        Ok(Self { shared })
    }

    /// Watches a run made with `options` from now until the returned guard ends.
    pub(super) fn watch(&self, options: Arc<RunOptions>, limit: Duration) -> Watch<'_> {
        let deadline = Instant::now() + limit;
        let mut runs = self.shared.runs();
        let id = runs.next;
        runs.next += 1;
        runs.watched.insert(id, (deadline, options));
        drop(runs);
        self.shared.wake.notify_one();
        Watch { dog: self, id }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.runs().closed = true;
        self.shared.wake.notify_one();
    }
}

/// One watched run.
pub(super) struct Watch<'a> {
    dog: &'a Watchdog,
    id: u64,
}

impl Watch<'_> {
    /// Ends the watch: whether the watchdog stopped the run.
    pub(super) fn finish(self) -> bool {
        !self.dog.shared.runs().watched.contains_key(&self.id)
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.dog.shared.runs().watched.remove(&self.id);
    }
}

/// The watchdog's thread: sleeps until the nearest deadline (or a new run), stops the runs
/// past theirs, and ends when the engine is dropped. A run is stopped only while it is
/// watched, so a late stop never hits the next run.
fn watch(shared: &Shared) {
    let mut runs = shared.runs();
    loop {
        if runs.closed {
            return;
        }
        let now = Instant::now();
        let expired: Vec<u64> = runs.watched.iter().filter(|(_, (deadline, _))| *deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some((_, options)) = runs.watched.remove(&id) {
                // Failing to set a flag leaves the run to finish: nothing better to do.
                let _ = options.terminate();
            }
        }
        runs = match runs.watched.values().map(|(deadline, _)| *deadline).min() {
            None => shared.wake.wait(runs).unwrap_or_else(|poisoned| poisoned.into_inner()),
            Some(deadline) => {
                shared.wake.wait_timeout(runs, deadline.saturating_duration_since(now)).unwrap_or_else(|poisoned| poisoned.into_inner()).0
            }
        };
    }
}
