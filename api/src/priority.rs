//! CPU priority of the server's threads. On a machine with few cores the model threads
//! are the bottleneck of inference tasks, and every other thread (HTTP, the event store,
//! the read models) competes with them for the same cores: measured on 2 cores, the
//! model thread sat runnable but waiting for a CPU about 30% of the time under 32 clients.
//! Lowering every other thread a few nice levels lets the models run whenever they
//! have work, and the rest fill the remaining CPU time (BENCHMARKS.md, stop 11).
//!
//! Only lowering is possible without privileges, so the model threads keep the
//! process's nice level and the others move down. Threads started later inherit the
//! nice level of the thread that starts them, so the runtime's new threads follow.

use std::io;
use std::str::FromStr;

/// Where the threads other than the model threads run (`MEDLEDGER_REQUEST_PRIORITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPriority {
    /// This many nice levels below the model threads (0: all alike).
    Nice(u8),
    /// Linux's `SCHED_IDLE`: they run on whatever CPU time the model threads leave, and
    /// a model thread that wakes takes its CPU back at once. A lower nice level only
    /// shrinks their share: the kernel still lets a running thread finish its time
    /// slice before a woken model thread gets the CPU.
    Idle,
}

impl FromStr for RequestPriority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "idle" => Ok(Self::Idle),
            n => match n.parse::<u8>() {
                Ok(levels) if levels <= 19 => Ok(Self::Nice(levels)),
                _ => Err(format!("'{s}' is neither 'idle' nor a number of nice levels from 0 to 19")),
            },
        }
    }
}

/// Moves every thread of this process whose name does not start with `keep` down to
/// `to`. Returns how many threads were lowered.
#[cfg(target_os = "linux")]
pub fn lower_threads_except(keep: &str, to: RequestPriority) -> io::Result<usize> {
    let mut lowered = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<libc::id_t>().ok()) else { continue };
        // A thread that ended since the listing has no comm any more: nothing to lower.
        let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if name.trim_end().starts_with(keep) {
            continue;
        }
        let done = match to {
            RequestPriority::Nice(levels) => {
                let target = (nice_of(tid)? + i32::from(levels)).min(19);
                // SAFETY: setpriority only reads its integer arguments.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) }
            }
            RequestPriority::Idle => {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: `param` outlives the call, which only reads it.
                unsafe { libc::sched_setscheduler(tid as libc::pid_t, libc::SCHED_IDLE, &param) }
            }
        };
        if done != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            return Err(error);
        }
        lowered += 1;
    }
    Ok(lowered)
}

#[cfg(not(target_os = "linux"))]
pub fn lower_threads_except(_keep: &str, _to: RequestPriority) -> io::Result<usize> {
    Ok(0)
}

/// The nice level of thread `tid` (Linux keeps one per thread).
#[cfg(target_os = "linux")]
pub fn nice_of(tid: libc::id_t) -> io::Result<i32> {
    // getpriority returns -1 both as a level and as an error: errno tells them apart.
    // SAFETY: errno is thread-local; getpriority only reads its arguments.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(nice)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Runs `check` with two named threads alive, a kept "model" one and another,
    /// given their thread ids; both end afterwards.
    fn with_threads(model: &str, other: &str, check: impl FnOnce(libc::id_t, libc::id_t)) {
        let release = std::sync::Arc::new(std::sync::Mutex::new(()));
        let guard = release.lock().unwrap();
        let parked = |name: &str| {
            let (tx, rx) = mpsc::channel();
            let release = release.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // SAFETY: gettid has no arguments and cannot fail.
                    tx.send(unsafe { libc::gettid() } as libc::id_t).unwrap();
                    drop(release.lock());
                })
                .unwrap();
            (rx.recv().unwrap(), handle)
        };
        let (model, model_thread) = parked(model);
        let (other, other_thread) = parked(other);
        check(model, other);
        drop(guard);
        model_thread.join().unwrap();
        other_thread.join().unwrap();
    }

    #[test]
    fn the_setting_reads_idle_or_nice_levels() {
        assert_eq!("idle".parse(), Ok(RequestPriority::Idle));
        assert_eq!(" 19 ".parse(), Ok(RequestPriority::Nice(19)));
        assert_eq!("0".parse(), Ok(RequestPriority::Nice(0)));
        for bad in ["20", "-1", "high", ""] {
            let refused = bad.parse::<RequestPriority>().unwrap_err();
            assert!(refused.contains("neither 'idle' nor"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn idle_moves_other_threads_to_sched_idle() {
        with_threads("idlekeep-model-0", "idle-other-worker", |model, other| {
            // SAFETY: sched_getscheduler only reads its argument.
            let policy = |tid: libc::id_t| unsafe { libc::sched_getscheduler(tid as libc::pid_t) };
            let before = policy(model);
            lower_threads_except("idlekeep-model-", RequestPriority::Idle).unwrap();
            assert_eq!(policy(other), libc::SCHED_IDLE);
            assert_eq!(policy(model), before);
        });
    }

    #[test]
    fn other_threads_move_down_and_the_kept_ones_stay() {
        with_threads("keepme-model-0", "other-worker", |model, other| {
            let (model_before, other_before) = (nice_of(model).unwrap(), nice_of(other).unwrap());
            let lowered = lower_threads_except("keepme-model-", RequestPriority::Nice(3)).unwrap();
            assert!(lowered >= 2, "this test's own thread and the other worker: {lowered}");
            assert_eq!(nice_of(model).unwrap(), model_before);
            assert_eq!(nice_of(other).unwrap(), (other_before + 3).min(19));
        });
    }
}
