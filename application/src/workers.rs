//! Dedicated threads for model runs. ONNX Runtime runs fastest on a thread that runs the
//! same sessions again and again (warm caches, no lock hand-offs); tokio's blocking pool
//! would spread the runs of 32 queued tasks over 32 threads queueing on one session.

use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs from one bounded queue.
#[derive(Clone)]
pub struct Workers {
    queue: mpsc::SyncSender<Job>,
}

impl Workers {
    /// `threads` threads named `name`, at most `queue` jobs waiting.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Self { queue: tx })
    }

    /// Runs `f` on a worker thread; waits (without blocking the runtime) for a place in
    /// the queue and for the answer. `None` if the workers are gone.
    pub async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // Waiting for room blocks the sender: do that off the runtime.
                let queue = self.queue.clone();
                tokio::task::spawn_blocking(move || queue.send(job)).await.ok()?.ok()?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return None,
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_named_threads_and_answer() {
        let workers = Workers::new("test-worker", 1, 4).unwrap();
        let name = workers.run(|| std::thread::current().name().map(str::to_string)).await.unwrap();
        assert_eq!(name.as_deref(), Some("test-worker-0"));
        let sums = futures::future::join_all((0..10).map(|i| workers.run(move || i * 2))).await;
        assert_eq!(sums.into_iter().map(Option::unwrap).sum::<i32>(), 90);
    }
}
