//! Loading aggregates from their streams and appending what commands decide.

use std::sync::Arc;

use medledger_domain::{Aggregate, DomainEvent};

use crate::AppError;
use crate::codec::{DecodedEvent, EventCodec};
use crate::metadata::CommandContext;
use crate::ports::{Appended, EventStore, ExpectedVersion, Position, StoreError, StreamWrite};

/// How many times a command is re-decided after losing an optimistic-concurrency race.
const CONFLICT_RETRIES: usize = 5;

#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn EventStore>,
    codec: EventCodec,
}

/// What `execute_from` did: the events appended (none: no change), the position of the
/// last, and the aggregate with its stream version after them.
pub struct Executed<A: Aggregate> {
    pub state: A,
    pub version: i64,
    pub events: Vec<A::Event>,
    pub position: Option<Position>,
}

/// One stream's share of an atomic multi-stream append.
pub struct Pending {
    write: StreamWrite,
    /// Kept though it writes nothing: it holds the append to its stream's version.
    guard: bool,
}

impl Pending {
    /// The ids of the events this part appends, in order.
    pub fn event_ids(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.write.events.iter().map(|e| e.event_id)
    }
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>, codec: EventCodec) -> Self {
        Self { store, codec }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn codec(&self) -> &EventCodec {
        &self.codec
    }

    /// Rebuilds an aggregate and returns it with its stream version.
    pub async fn load<A: Aggregate>(&self, stream_id: &str) -> Result<(A, i64), AppError> {
        let recorded = self.store.read_stream(stream_id).await?;
        let version = recorded.last().map_or(0, |e| e.version);
        let mut state = A::default();
        for r in recorded {
            let decoded = self.codec.decode(r).await?;
            let event: A::Event = decoded
                .to_domain()?
                .ok_or_else(|| StoreError::Corrupt(format!("event {} does not belong to {}", decoded.recorded.position, A::CATEGORY)))?;
            state.apply(&event);
        }
        Ok((state, version))
    }

    /// Encodes `events` as one stream's part of an append.
    pub async fn prepare<E: DomainEvent>(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[E],
        ctx: &CommandContext,
    ) -> Result<Pending, AppError> {
        self.prepare_in(stream_id, stream_id, expected, events, ctx).await
    }

    /// `prepare`, with the event ids an idempotency key gives derived from `id_scope`
    /// rather than the stream: a command that writes to a fresh stream each time (a
    /// dataset's next item) keeps the ids a retry must repeat to be recognised.
    pub async fn prepare_in<E: DomainEvent>(
        &self,
        stream_id: &str,
        id_scope: &str,
        expected: ExpectedVersion,
        events: &[E],
        ctx: &CommandContext,
    ) -> Result<Pending, AppError> {
        let mut encoded = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            encoded.push(self.codec.encode(e, ctx.event_id(id_scope, i), &ctx.metadata).await?);
        }
        Ok(Pending { write: StreamWrite { stream_id: stream_id.to_string(), expected, events: encoded }, guard: false })
    }

    /// A part that appends nothing to `stream_id` but makes the whole append conflict
    /// unless that stream is still at `version`: a decision taken on one stream (a
    /// dataset live) recorded on another (its item's).
    pub fn expect_unchanged(&self, stream_id: &str, version: i64) -> Pending {
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        Pending { write: StreamWrite { stream_id: stream_id.to_string(), expected, events: Vec::new() }, guard: true }
    }

    pub async fn commit(&self, parts: Vec<Pending>) -> Result<Appended, AppError> {
        if parts.iter().all(|p| p.write.events.is_empty()) {
            return Err(StoreError::Empty.into());
        }
        let writes: Vec<StreamWrite> = parts.into_iter().filter(|p| p.guard || !p.write.events.is_empty()).map(|p| p.write).collect();
        if writes.is_empty() {
            return Err(StoreError::Empty.into());
        }
        Ok(self.store.append(writes).await?)
    }

    /// Loads the aggregate, decides, appends; re-decides on a concurrency conflict.
    /// Returns the events written and the position of the last one (None: no change).
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, medledger_domain::DomainError>,
    ) -> Result<(Vec<A::Event>, Option<Position>), AppError> {
        let done = self.execute_from(stream_id, ctx, None, decide).await?;
        Ok((done.events, done.position))
    }

    /// `execute`, deciding first on `known` (the aggregate and its stream version as the
    /// caller last saw them, saving a load) when given; a conflicting append reloads and
    /// decides again. Returns the aggregate as the append left it.
    pub async fn execute_from<A: Aggregate>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        mut known: Option<(A, i64)>,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, medledger_domain::DomainError>,
    ) -> Result<Executed<A>, AppError> {
        let mut attempt = 0;
        loop {
            let (mut state, version) = match known.take() {
                Some(known) => known,
                None => self.load::<A>(stream_id).await?,
            };
            let events = decide(&state)?;
            if events.is_empty() {
                return Ok(Executed { state, version, events, position: None });
            }
            let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
            let part = self.prepare(stream_id, expected, &events, ctx).await?;
            match self.commit(vec![part]).await {
                Ok(appended) => {
                    for e in &events {
                        state.apply(e);
                    }
                    let version = version + events.len() as i64;
                    return Ok(Executed { state, version, events, position: Some(appended.last_position) });
                }
                Err(AppError::Store(StoreError::Conflict { .. })) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn decode(&self, recorded: crate::ports::RecordedEvent) -> Result<DecodedEvent, AppError> {
        self.codec.decode(recorded).await
    }
}
