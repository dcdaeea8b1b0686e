//! One lifecycle for work that runs outside a request: inference tasks and collection
//! builds today, scan processing and QC runs next. A job is queued, claimed by a runner
//! (running), and ends done or failed; it may be cancelled before it ends.
//!
//! The runner is at-least-once: a crash mid-run leaves the job running and it is
//! claimed again, and a result may arrive twice or after a cancellation. So only the
//! first outcome of an open job counts, and late or repeated outcomes are no-ops.
//!
//! Each kind of job keeps its own events (their names and payloads are what the
//! history stores) and maps them onto [`JobChange`]s; its aggregate asks the [`Job`]
//! what a command means (the small decision types below) and words the answer in its
//! own events.

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;

/// How a kind of job records its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starts {
    /// Each claim is recorded as an attempt. A job still running when it is claimed
    /// again was interrupted (its runner died), and one interrupted `max_attempts`
    /// times fails instead of being retried forever.
    Recorded { max_attempts: u32 },
    /// Claims are not recorded: every run starts from scratch, as often as the runner
    /// delivers the job, and its outcome ends the job straight from the queue.
    Unrecorded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    /// Cancelled before it ended.
    Cancelled,
}

/// How far a run has got, in percent; it only moves forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Progress(u8);

impl Progress {
    pub const DONE: Progress = Progress(100);

    pub fn percent(self) -> u8 {
        self.0
    }

    /// The progress at `percent` (at most 100) if that is further than `self`; a report
    /// from behind (a stale or reordered one) changes nothing.
    pub fn advance(self, percent: u8) -> Option<Progress> {
        let next = Progress(percent.min(100));
        (next > self).then_some(next)
    }
}

/// What an event of a job's kind did to its lifecycle (the job's creation is
/// [`Job::queued`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Started { attempt: u32 },
    Progressed(Progress),
    Succeeded,
    Failed,
    Cancelled,
}

/// What claiming a job for a run means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Start {
    /// Record this attempt, then run.
    Run { attempt: u32 },
    /// Run without recording anything ([`Starts::Unrecorded`]).
    RunUnrecorded,
    /// Interrupted this many times, the most allowed: record a failure, do not run.
    GiveUp { attempts: u32 },
    /// Ended or cancelled: nothing to run.
    Nothing,
}

/// Whether an outcome (a result or a failure) is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum End {
    Record,
    /// A second, late or unclaimed outcome: a no-op, not an error, because an
    /// at-least-once runner sends such outcomes in the normal course of things.
    Ignore,
}

/// What cancelling a job means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Cancel {
    /// Not ended yet: record the cancellation; any later outcome is ignored.
    Cancel,
    /// Already ended: there is nothing to stop (the kind decides what removing an
    /// ended job means).
    Ended,
    /// Already cancelled.
    Gone,
}

/// A job's lifecycle as its history left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    starts: Starts,
    status: JobStatus,
    attempts: u32,
    progress: Progress,
}

impl Job {
    pub fn queued(starts: Starts) -> Self {
        Self { starts, status: JobStatus::Queued, attempts: 0, progress: Progress::default() }
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// How many times the job was started (recorded starts only).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Queued or running: a run may still end it.
    pub fn is_open(&self) -> bool {
        matches!(self.status, JobStatus::Queued | JobStatus::Running)
    }

    pub fn start(&self) -> Start {
        match (self.status, self.starts) {
            (JobStatus::Queued | JobStatus::Running, Starts::Unrecorded) => Start::RunUnrecorded,
            (JobStatus::Queued, Starts::Recorded { .. }) => Start::Run { attempt: self.attempts + 1 },
            // Still running when claimed again: the previous run died.
            (JobStatus::Running, Starts::Recorded { max_attempts }) if self.attempts >= max_attempts => {
                Start::GiveUp { attempts: self.attempts }
            }
            (JobStatus::Running, Starts::Recorded { .. }) => Start::Run { attempt: self.attempts + 1 },
            (JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled, _) => Start::Nothing,
        }
    }

    /// A result counts only from a run that was claimed: where claims are recorded, a
    /// result for a job still queued came from no run the history knows of.
    pub fn succeed(&self) -> End {
        match (self.status, self.starts) {
            (JobStatus::Running, _) | (JobStatus::Queued, Starts::Unrecorded) => End::Record,
            _ => End::Ignore,
        }
    }

    /// A failure may end a job that never ran (its input turned out unusable, say).
    pub fn fail(&self) -> End {
        if self.is_open() { End::Record } else { End::Ignore }
    }

    pub fn cancel(&self) -> Cancel {
        match self.status {
            JobStatus::Queued | JobStatus::Running => Cancel::Cancel,
            JobStatus::Done | JobStatus::Failed => Cancel::Ended,
            JobStatus::Cancelled => Cancel::Gone,
        }
    }

    /// The progress a running job's report moves it to, if it moves it forward.
    pub fn report(&self, percent: u8) -> Option<Progress> {
        if self.is_open() { self.progress.advance(percent) } else { None }
    }

    pub fn apply(&mut self, change: JobChange) {
        match change {
            JobChange::Started { attempt } => {
                self.status = JobStatus::Running;
                self.attempts = attempt;
            }
            JobChange::Progressed(progress) => self.progress = self.progress.max(progress),
            JobChange::Succeeded => {
                self.status = JobStatus::Done;
                self.progress = Progress::DONE;
            }
            JobChange::Failed => self.status = JobStatus::Failed,
            JobChange::Cancelled => self.status = JobStatus::Cancelled,
        }
    }
}

/// An aggregate whose lifecycle is a [`Job`]: what the application's job runner needs
/// to claim it and to record a run's outcome. The aggregate is the kind's payload and
/// events; the run itself is the application's.
pub trait JobAggregate: Aggregate {
    /// What a successful run yields for the result event.
    type Output: Send + Sync + 'static;

    fn stream_id(id: i64) -> String;

    /// `None` before the job exists.
    fn job(&self) -> Option<&Job>;

    /// The command that claims the job for a run; the runner runs the job only if the
    /// job is open once the command is decided (and its events appended).
    fn start() -> Self::Command;

    /// The command that records a run's outcome: its output or why it failed.
    fn end(outcome: &Result<Self::Output, String>) -> Self::Command;
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: Starts = Starts::Recorded { max_attempts: 3 };

    fn given(starts: Starts, changes: &[JobChange]) -> Job {
        let mut job = Job::queued(starts);
        for change in changes {
            job.apply(*change);
        }
        job
    }

    const STARTED: JobChange = JobChange::Started { attempt: 1 };

    #[test]
    fn a_queued_job_is_claimed_as_attempt_one_then_runs_to_done() {
        let job = given(RECORDED, &[]);
        assert_eq!((job.status(), job.attempts(), job.is_open()), (JobStatus::Queued, 0, true));
        assert_eq!(job.start(), Start::Run { attempt: 1 });

        let job = given(RECORDED, &[STARTED]);
        assert_eq!((job.status(), job.attempts()), (JobStatus::Running, 1));
        assert_eq!(job.succeed(), End::Record);

        let job = given(RECORDED, &[STARTED, JobChange::Succeeded]);
        assert_eq!((job.status(), job.progress(), job.is_open()), (JobStatus::Done, Progress::DONE, false));
        assert_eq!(job.start(), Start::Nothing);
    }

    #[test]
    fn a_job_claimed_again_while_running_was_interrupted_and_fails_when_its_attempts_run_out() {
        let job = given(RECORDED, &[STARTED]);
        assert_eq!(job.start(), Start::Run { attempt: 2 });
        let job = given(RECORDED, &[STARTED, JobChange::Started { attempt: 2 }, JobChange::Started { attempt: 3 }]);
        assert_eq!(job.attempts(), 3);
        assert_eq!(job.start(), Start::GiveUp { attempts: 3 });

        let failed = given(RECORDED, &[STARTED, JobChange::Started { attempt: 2 }, JobChange::Started { attempt: 3 }, JobChange::Failed]);
        assert_eq!((failed.status(), failed.attempts()), (JobStatus::Failed, 3));
        assert_eq!(failed.start(), Start::Nothing);
    }

    #[test]
    fn queued_and_running_jobs_can_fail_once() {
        for history in [&[][..], &[STARTED]] {
            assert_eq!(given(RECORDED, history).fail(), End::Record);
            let failed = given(RECORDED, &[history, &[JobChange::Failed]].concat());
            assert_eq!(failed.status(), JobStatus::Failed);
            assert_eq!((failed.fail(), failed.succeed()), (End::Ignore, End::Ignore));
        }
    }

    #[test]
    fn a_second_or_late_outcome_is_ignored() {
        let done = given(RECORDED, &[STARTED, JobChange::Succeeded]);
        assert_eq!((done.succeed(), done.fail()), (End::Ignore, End::Ignore));
        let cancelled = given(RECORDED, &[STARTED, JobChange::Cancelled]);
        assert_eq!((cancelled.succeed(), cancelled.fail(), cancelled.start()), (End::Ignore, End::Ignore, Start::Nothing));
    }

    #[test]
    fn a_result_for_an_unclaimed_job_is_ignored_where_claims_are_recorded() {
        assert_eq!(given(RECORDED, &[]).succeed(), End::Ignore);
        assert_eq!(given(Starts::Unrecorded, &[]).succeed(), End::Record);
    }

    #[test]
    fn unrecorded_starts_run_again_from_the_queue_without_limit_until_an_outcome() {
        let job = given(Starts::Unrecorded, &[]);
        assert_eq!(job.start(), Start::RunUnrecorded);
        assert_eq!(job.fail(), End::Record);
        let built = given(Starts::Unrecorded, &[JobChange::Succeeded]);
        assert_eq!((built.status(), built.start(), built.succeed()), (JobStatus::Done, Start::Nothing, End::Ignore));
    }

    #[test]
    fn unfinished_jobs_cancel_and_ended_ones_say_so() {
        for history in [&[][..], &[STARTED]] {
            assert_eq!(given(RECORDED, history).cancel(), Cancel::Cancel);
            let cancelled = given(RECORDED, &[history, &[JobChange::Cancelled]].concat());
            assert_eq!((cancelled.status(), cancelled.is_open(), cancelled.cancel()), (JobStatus::Cancelled, false, Cancel::Gone));
        }
        assert_eq!(given(RECORDED, &[STARTED, JobChange::Succeeded]).cancel(), Cancel::Ended);
        assert_eq!(given(RECORDED, &[JobChange::Failed]).cancel(), Cancel::Ended);
    }

    #[test]
    fn progress_only_moves_forward() {
        let at = |p: u8| JobChange::Progressed(Progress(p));
        let job = given(RECORDED, &[STARTED, at(40)]);
        assert_eq!(job.progress().percent(), 40);
        assert_eq!(job.report(30), None);
        assert_eq!(job.report(40), None);
        assert_eq!(job.report(55), Some(Progress(55)));
        assert_eq!(job.report(250), Some(Progress::DONE), "capped at 100");
        assert_eq!(given(RECORDED, &[STARTED, at(40), at(10)]).progress().percent(), 40, "a reordered report");
        assert_eq!(given(RECORDED, &[STARTED, JobChange::Succeeded]).report(100), None, "ended jobs report nothing");
        assert_eq!(Progress::default().advance(0), None);
        assert_eq!(Progress::default().advance(1).map(Progress::percent), Some(1));
    }
}
