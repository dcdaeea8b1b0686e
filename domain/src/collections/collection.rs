//! Collections: a user's request to bundle items of chosen datasets into a ZIP archive.
//! Requested → built (ready) | failed; a ready archive expires after its time to live.
//!
//! The build is a [`Job`] whose starts are not recorded: every delivery of the request
//! builds from scratch until an outcome is recorded, and a redelivered outcome is a
//! no-op.

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::aggregate::{Aggregate, DomainEvent};
use crate::events::EventNames;
use crate::job::{End, Job, JobAggregate, JobChange, JobStatus, Starts};

pub type CollectionId = i64;

pub fn stream_id(id: CollectionId) -> String {
    format!("collection-{id}")
}

/// The most items one dataset may contribute to one collection.
pub const MAX_LIMIT_PER_DATASET: i64 = 100_000;
/// The most datasets one collection may draw from.
pub const MAX_DATASETS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRequest {
    pub owner_id: i64,
    pub query_text: String,
    pub dataset_ids: Vec<i64>,
    pub limit_per_dataset: i64,
}

impl CollectionRequest {
    /// Bounds and shape; whether the datasets exist is the application's check.
    pub fn validate(mut self) -> Result<Self, DomainError> {
        self.query_text = self.query_text.trim().to_string();
        if self.query_text.chars().count() > 1_000 {
            return Err(DomainError::invalid("query_text", "at most 1000 characters"));
        }
        if self.dataset_ids.is_empty() || self.dataset_ids.len() > MAX_DATASETS {
            return Err(DomainError::invalid("dataset_ids", format!("choose 1 to {MAX_DATASETS} datasets")));
        }
        let mut seen = Vec::with_capacity(self.dataset_ids.len());
        for id in &self.dataset_ids {
            if !seen.contains(id) {
                seen.push(*id);
            }
        }
        self.dataset_ids = seen;
        if !(1..=MAX_LIMIT_PER_DATASET).contains(&self.limit_per_dataset) {
            return Err(DomainError::invalid("limit_per_dataset", format!("must be from 1 to {MAX_LIMIT_PER_DATASET}")));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltArchive {
    pub archive_key: String,
    pub archive_size: i64,
    pub items: i64,
    /// RFC 3339; decided by the application's clock and configured time to live.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum CollectionEvent {
    CollectionRequested { collection_id: CollectionId, request: CollectionRequest },
    CollectionBuilt { collection_id: CollectionId, archive: BuiltArchive },
    CollectionFailed { collection_id: CollectionId, reason: String },
    CollectionExpired { collection_id: CollectionId },
}

impl DomainEvent for CollectionEvent {}

#[derive(Debug)]
pub enum CollectionCommand {
    Request { collection_id: CollectionId, request: CollectionRequest },
    MarkBuilt { archive: BuiltArchive },
    MarkFailed { reason: String },
    Expire,
    // A runner takes the build: nothing is recorded, it builds while the build is open.
    StartBuild,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionStatus {
    Pending,
    Ready,
    Failed,
    Expired,
}

impl CollectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionStatus::Pending => "pending",
            CollectionStatus::Ready => "ready",
            CollectionStatus::Failed => "failed",
            CollectionStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Default)]
pub struct Collection {
    id: Option<CollectionId>,
    request: Option<CollectionRequest>,
    build: Option<Job>,
    expired: bool,
    archive: Option<BuiltArchive>,
}

impl Collection {
    pub fn status(&self) -> Option<CollectionStatus> {
        let build = self.build.as_ref()?;
        Some(match build.status() {
            _ if self.expired => CollectionStatus::Expired,
            JobStatus::Queued | JobStatus::Running => CollectionStatus::Pending,
            JobStatus::Done => CollectionStatus::Ready,
            // No collection event cancels a build.
            JobStatus::Failed | JobStatus::Cancelled => CollectionStatus::Failed,
        })
    }

    pub fn request(&self) -> Option<&CollectionRequest> {
        self.request.as_ref()
    }

    pub fn archive(&self) -> Option<&BuiltArchive> {
        self.archive.as_ref()
    }

    fn build_of(&self) -> Result<(CollectionId, &Job), DomainError> {
        self.id.zip(self.build.as_ref()).ok_or(DomainError::NotFound("collection"))
    }
}

impl Aggregate for Collection {
    type Command = CollectionCommand;
    type Event = CollectionEvent;
    const CATEGORY: &'static str = "collection";

    fn handle(&self, command: CollectionCommand) -> Result<Vec<CollectionEvent>, DomainError> {
        match command {
            CollectionCommand::Request { collection_id, request } => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists("collection"));
                }
                Ok(vec![CollectionEvent::CollectionRequested { collection_id, request: request.validate()? }])
            }
            // Builds do not record their starts (`Starts::Unrecorded`): the runner builds
            // while the build is open, as the history already says.
            CollectionCommand::StartBuild => Ok(vec![]),
            // A redelivered build result (the saga is at-least-once) changes nothing.
            CollectionCommand::MarkBuilt { archive } => {
                let (collection_id, build) = self.build_of()?;
                Ok(match build.succeed() {
                    End::Record => vec![CollectionEvent::CollectionBuilt { collection_id, archive }],
                    End::Ignore => vec![],
                })
            }
            CollectionCommand::MarkFailed { reason } => {
                let (collection_id, build) = self.build_of()?;
                Ok(match build.fail() {
                    End::Record => vec![CollectionEvent::CollectionFailed { collection_id, reason }],
                    End::Ignore => vec![],
                })
            }
            CollectionCommand::Expire => {
                let (collection_id, _) = self.build_of()?;
                match self.status() {
                    Some(CollectionStatus::Ready) => Ok(vec![CollectionEvent::CollectionExpired { collection_id }]),
                    _ => Ok(vec![]),
                }
            }
        }
    }

    fn apply(&mut self, event: &CollectionEvent) {
        match event {
            CollectionEvent::CollectionRequested { collection_id, request } => {
                self.id = Some(*collection_id);
                self.request = Some(request.clone());
                self.build = Some(Job::queued(Starts::Unrecorded));
            }
            CollectionEvent::CollectionBuilt { archive, .. } => {
                self.archive = Some(archive.clone());
                self.apply_to_build(JobChange::Succeeded);
            }
            CollectionEvent::CollectionFailed { .. } => self.apply_to_build(JobChange::Failed),
            CollectionEvent::CollectionExpired { .. } => self.expired = true,
        }
    }
}

impl Collection {
    fn apply_to_build(&mut self, change: JobChange) {
        if let Some(build) = self.build.as_mut() {
            build.apply(change);
        }
    }
}

impl JobAggregate for Collection {
    type Output = BuiltArchive;

    fn stream_id(id: i64) -> String {
        stream_id(id)
    }

    fn job(&self) -> Option<&Job> {
        self.build.as_ref()
    }

    fn start() -> CollectionCommand {
        CollectionCommand::StartBuild
    }

    fn end(outcome: &Result<BuiltArchive, String>) -> CollectionCommand {
        match outcome {
            Ok(archive) => CollectionCommand::MarkBuilt { archive: archive.clone() },
            Err(reason) => CollectionCommand::MarkFailed { reason: reason.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Given, given};

    fn request() -> CollectionRequest {
        CollectionRequest { owner_id: 7, query_text: " pneumonia ".into(), dataset_ids: vec![1, 3, 1], limit_per_dataset: 10 }
    }

    fn archive() -> BuiltArchive {
        BuiltArchive { archive_key: "k".into(), archive_size: 10, items: 2, expires_at: "t".into() }
    }

    fn requested() -> Given<Collection> {
        given::<Collection>([]).when(CollectionCommand::Request { collection_id: 42, request: request() }).and()
    }

    #[test]
    fn a_request_is_cleaned_and_starts_pending() {
        let history = requested();
        let [CollectionEvent::CollectionRequested { request, .. }] = history.history() else { panic!("{:?}", history.history()) };
        assert_eq!(request.query_text, "pneumonia");
        assert_eq!(request.dataset_ids, [1, 3], "duplicates dropped, order kept");
        assert_eq!(history.state().status(), Some(CollectionStatus::Pending));
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (bad, field) in [
            (CollectionRequest { limit_per_dataset: 0, ..request() }, "limit_per_dataset"),
            (CollectionRequest { limit_per_dataset: -5, ..request() }, "limit_per_dataset"),
            (CollectionRequest { limit_per_dataset: MAX_LIMIT_PER_DATASET + 1, ..request() }, "limit_per_dataset"),
            (CollectionRequest { dataset_ids: vec![], ..request() }, "dataset_ids"),
            (CollectionRequest { query_text: "x".repeat(1001), ..request() }, "query_text"),
        ] {
            match bad.validate() {
                Err(DomainError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn pending_becomes_ready_once_and_redelivery_changes_nothing() {
        let built = CollectionEvent::CollectionBuilt { collection_id: 42, archive: archive() };
        let ready = requested().when(CollectionCommand::MarkBuilt { archive: archive() }).then([built]);
        assert_eq!(ready.state().status(), Some(CollectionStatus::Ready));
        ready
            .when(CollectionCommand::MarkBuilt { archive: archive() })
            .then_nothing()
            .when(CollectionCommand::MarkFailed { reason: "late".into() })
            .then_nothing();
    }

    #[test]
    fn a_build_is_open_until_its_outcome_and_its_start_is_not_recorded() {
        let pending = requested().when(CollectionCommand::StartBuild).then_nothing();
        assert!(pending.state().job().is_some_and(Job::is_open), "the runner builds it");
        let failed = pending.when(CollectionCommand::MarkFailed { reason: "no items".into() }).and();
        assert!(!failed.state().job().is_some_and(Job::is_open), "a redelivered request builds nothing");
        assert_eq!(Collection::default().handle(CollectionCommand::StartBuild), Ok(vec![]));
        assert_eq!(Collection::default().job(), None);
    }

    #[test]
    fn only_ready_collections_expire_and_failed_ones_stay_failed() {
        let failed = requested().when(CollectionCommand::MarkFailed { reason: "no items".into() }).and();
        assert_eq!(failed.state().status(), Some(CollectionStatus::Failed));
        failed.when(CollectionCommand::Expire).then_nothing();

        let expired = requested()
            .when(CollectionCommand::MarkBuilt { archive: archive() })
            .and()
            .when(CollectionCommand::Expire)
            .then([CollectionEvent::CollectionExpired { collection_id: 42 }]);
        assert_eq!(expired.state().status(), Some(CollectionStatus::Expired));
        expired.when(CollectionCommand::Expire).then_nothing();
    }

    #[test]
    fn commands_on_a_missing_collection_are_not_found() {
        given::<Collection>([]).when(CollectionCommand::Expire).then_refused(DomainError::NotFound("collection"));
        assert!(requested().when(CollectionCommand::Request { collection_id: 42, request: request() }).result().is_err());
    }
}
