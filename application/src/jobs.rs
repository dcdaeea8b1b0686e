//! The job runner: claims a job, runs it, records its outcome once, for every kind of
//! job (inference tasks and collection builds today).
//!
//! A kind of job is its aggregate (payload and events, with a [`Job`] as its lifecycle:
//! [`JobAggregate`]) and its run function ([`JobKind`]). Sagas hand the runner the jobs
//! they see queued. The runner is at-least-once: a server killed mid-run has not moved
//! its saga's checkpoint past the job, so the job is claimed again after a restart
//! (a recorded start counts the attempt), and the claim and the outcome are each
//! appended against the stream's version, so however often a job runs, one outcome is
//! recorded.
//!
//! [`Job`]: medledger_domain::job::Job

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use medledger_domain::job::{Job, JobAggregate, Progress};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::AppError;
use crate::ledger::{Executed, Ledger};
use crate::metadata::CommandContext;

/// What a run yields, or why the job failed (the reason its owner reads).
pub type Outcome<T> = Result<T, String>;

/// What a kind of job does when it runs.
#[async_trait]
pub trait JobKind: Send + Sync {
    type Job: JobAggregate;

    /// One run of claimed job `id` (as `job` stood when claimed). `Err` is a run that
    /// cannot tell how the job went (the store failed): nothing is recorded and the job
    /// runs again on its next delivery.
    async fn perform(
        &self,
        id: i64,
        job: &Self::Job,
        progress: &ProgressReport,
    ) -> Result<Outcome<<Self::Job as JobAggregate>::Output>, AppError>;
}

/// How far the jobs running in this process have got. Progress is not recorded: it is
/// only worth showing while a run lasts, and a run after a restart starts over.
#[derive(Clone, Default)]
pub struct JobProgress(Arc<Mutex<BTreeMap<i64, Progress>>>);

impl JobProgress {
    /// In percent; `None` when the job is not running here or has not reported yet.
    pub fn get(&self, id: i64) -> Option<u8> {
        self.0.lock().ok()?.get(&id).map(|p| p.percent())
    }

    fn report(&self, id: i64, percent: u8) {
        if let Ok(mut all) = self.0.lock() {
            let now = all.get(&id).copied().unwrap_or_default();
            if let Some(next) = now.advance(percent) {
                all.insert(id, next);
            }
        }
    }

    fn clear(&self, id: i64) {
        if let Ok(mut all) = self.0.lock() {
            all.remove(&id);
        }
    }
}

/// A run's handle for reporting its progress; reports from behind are ignored.
#[derive(Clone)]
pub struct ProgressReport {
    progress: JobProgress,
    id: i64,
}

impl ProgressReport {
    pub fn report(&self, percent: u8) {
        self.progress.report(self.id, percent);
    }
}

/// Runs of one kind of job that this process began where the job was recorded (the
/// request that queued it), so that the saga waits for them instead of repeating them.
#[derive(Clone)]
struct Dispatched {
    /// Job → the run's outcome once it ends (`Some(true)`: an outcome was recorded).
    runs: Arc<Mutex<HashMap<i64, watch::Receiver<Option<bool>>>>>,
    /// Runs in flight at once; beyond that, jobs wait in the event store for the saga.
    room: Arc<Semaphore>,
}

impl Dispatched {
    fn runs(&self) -> MutexGuard<'_, HashMap<i64, watch::Receiver<Option<bool>>>> {
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for this process's run of `id`, if there is one: whether it recorded an
    /// outcome. `None`: no such run, or it ended without saying.
    async fn wait(&self, id: i64) -> Option<bool> {
        let mut rx = self.runs().get(&id)?.clone();
        rx.wait_for(Option::is_some).await.ok().and_then(|o| *o)
    }
}

/// A dispatched run's place, taken before its job is recorded so that the saga cannot
/// miss it; dropping it (a failed append, a panic) ends the run for the saga without an
/// outcome, so the saga runs the job itself.
pub struct Dispatch {
    dispatched: Dispatched,
    id: i64,
    outcome: watch::Sender<Option<bool>>,
    _permit: OwnedSemaphorePermit,
}

impl Dispatch {
    fn finish(self, recorded: bool) {
        self.outcome.send_replace(Some(recorded));
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        self.dispatched.runs().remove(&self.id);
    }
}

/// Claims, runs and records the jobs of one kind (`A`).
pub struct JobRunner<A> {
    ledger: Ledger,
    dispatched: Dispatched,
    progress: JobProgress,
    kind: PhantomData<fn() -> A>,
}

impl<A> Clone for JobRunner<A> {
    fn clone(&self) -> Self {
        Self { ledger: self.ledger.clone(), dispatched: self.dispatched.clone(), progress: self.progress.clone(), kind: PhantomData }
    }
}

impl<A: JobAggregate + 'static> JobRunner<A> {
    /// A runner whose jobs only the saga runs (see [`Self::dispatching`]).
    pub fn new(ledger: Ledger) -> Self {
        let dispatched = Dispatched { runs: Arc::default(), room: Arc::new(Semaphore::new(0)) };
        Self { ledger, dispatched, progress: JobProgress::default(), kind: PhantomData }
    }

    /// Lets up to `in_flight` jobs at once run straight from where they are recorded.
    pub fn dispatching(mut self, in_flight: usize) -> Self {
        self.dispatched.room = Arc::new(Semaphore::new(in_flight.max(1)));
        self
    }

    pub fn progress(&self) -> &JobProgress {
        &self.progress
    }

    /// Runs job `id` to its end, exactly once as far as the history can tell: claims
    /// it, runs it, records the outcome. The job is read once; only a conflicting write
    /// (another runner, a cancellation) makes it decide again on a reload. A run this
    /// process dispatched is waited for, not repeated.
    pub async fn run<K: JobKind<Job = A>>(&self, kind: &K, id: i64, ctx: &CommandContext) -> Result<(), AppError> {
        if self.dispatched.wait(id).await == Some(true) {
            return Ok(());
        }
        let stream = A::stream_id(id);
        let Some(claimed) = self.claim(&stream, None, ctx).await? else { return Ok(()) };
        let report = ProgressReport { progress: self.progress.clone(), id };
        let outcome = kind.perform(id, &claimed.state, &report).await;
        self.progress.clear(id);
        self.record(&stream, claimed, &outcome?, ctx).await
    }

    /// Takes a place for a run of job `id` straight from where it is about to be
    /// recorded; `None` when this process runs as many as it may already.
    pub fn dispatch(&self, id: i64) -> Option<Dispatch> {
        let permit = self.dispatched.room.clone().try_acquire_owned().ok()?;
        let (outcome, rx) = watch::channel(None);
        self.dispatched.runs().insert(id, rx);
        Some(Dispatch { dispatched: self.dispatched.clone(), id, outcome, _permit: permit })
    }

    /// Runs a job recorded a moment ago (`known`: the aggregate and its stream version)
    /// whose work the caller has prepared, in a task of its own. The claim is appended
    /// while the work already runs, since a queued job's claim can only be refused by a
    /// cancellation in between, and then the outcome is dropped.
    pub fn run_dispatched(
        &self,
        dispatch: Dispatch,
        known: (A, i64),
        work: impl Future<Output = Outcome<A::Output>> + Send + 'static,
        ctx: CommandContext,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let stream = A::stream_id(dispatch.id);
            let (claimed, outcome) = tokio::join!(this.claim(&stream, Some(known), &ctx), work);
            let recorded = match claimed {
                Ok(Some(claimed)) => this.record(&stream, claimed, &outcome, &ctx).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(error) = &recorded {
                tracing::warn!(%stream, %error, "a job run straight from its request ended without an outcome; the saga runs it");
            }
            dispatch.finish(recorded.is_ok());
        });
    }

    /// Decides the kind's claim and appends it: the job is this run's to run if it is
    /// still open afterwards (a recorded start was appended, or starts are not
    /// recorded and no outcome is).
    async fn claim(&self, stream: &str, known: Option<(A, i64)>, ctx: &CommandContext) -> Result<Option<Executed<A>>, AppError> {
        let claimed = self.ledger.execute_from::<A>(stream, ctx, known, |a| a.handle(A::start())).await?;
        Ok(claimed.state.job().is_some_and(Job::is_open).then_some(claimed))
    }

    /// Records the outcome on the job as its claim left it; the job's rules make a
    /// second or late outcome a no-op.
    async fn record(&self, stream: &str, claimed: Executed<A>, outcome: &Outcome<A::Output>, ctx: &CommandContext) -> Result<(), AppError> {
        let known = Some((claimed.state, claimed.version));
        self.ledger.execute_from::<A>(stream, ctx, known, |a| a.handle(A::end(outcome))).await?;
        Ok(())
    }
}
