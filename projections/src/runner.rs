//! Feeds projections and sagas from their checkpoints: catch up, then follow live
//! appends (woken by the store's watch, re-querying the table each time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medledger_application::codec::{DecodeError, DecodedEvent, EventCodec};
use medledger_application::ports::{ChainHead, EventStore, Position};
use medledger_application::sagas::Saga;
use medledger_domain::EventTypes;
use sqlx::{AnyPool, Column as _, Row as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SelfCheckpointed;
use crate::tail::Tail;
use crate::{Projection, ProjectionError};

pub(crate) const PAGE: usize = 1_000;
/// Replay reads larger pages: nobody waits on them, and fewer commits are cheaper.
const REPLAY_PAGE: usize = 5_000;
/// Upper bound on how long a follower sleeps when no wake-up arrives (appends by
/// another process on SQLite, a lost notification on PostgreSQL).
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// How far each projection and saga has got, and which are stuck.
#[derive(Clone)]
pub struct Progress {
    positions: Arc<BTreeMap<String, watch::Receiver<Position>>>,
    stuck: Arc<Mutex<BTreeMap<String, Stuck>>>,
}

/// A subscriber stopped at an event of a type it handles that does not decode. It
/// retries that event (never skips it) until the code or the history is fixed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Stuck {
    /// The read model or saga (`saga:<name>`), as in `medledger_projection_position`.
    pub projection: String,
    /// The event's global position; the subscriber has applied everything before it.
    pub position: Position,
    pub event_type: String,
    /// What serde found wrong with it.
    pub error: String,
}

impl Progress {
    /// Read-your-writes: waits until every read model has applied `position`.
    /// Returns false if that took longer than `timeout`.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for (name, rx) in self.positions.iter() {
            if !name.starts_with("saga:") && !reaches(rx.clone(), position, deadline).await {
                return false;
            }
        }
        true
    }

    /// Read-your-writes for one response: waits until each read model it reads (named
    /// in `read_models`, see `read_models`) has applied `position`; the others, however
    /// far behind or stuck, do not hold it. False if that took longer than `timeout`, or
    /// a name matches no read model.
    pub async fn caught_up_on(&self, read_models: &[&str], position: Position, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for name in read_models {
            let Some(rx) = self.positions.get(*name).cloned() else { return false };
            if !reaches(rx, position, deadline).await {
                return false;
            }
        }
        true
    }

    /// `caught_up_on` one read model.
    pub async fn wait_for_one(&self, name: &str, position: Position, timeout: Duration) -> bool {
        self.caught_up_on(&[name], position, timeout).await
    }

    pub fn positions(&self) -> Vec<(String, Position)> {
        self.positions.iter().map(|(n, rx)| (n.clone(), *rx.borrow())).collect()
    }

    /// The subscribers stopped at an event they cannot decode (none, normally).
    pub fn stuck(&self) -> Vec<Stuck> {
        self.stuck_map().values().cloned().collect()
    }

    fn stuck_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stuck>> {
        self.stuck.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records why `name` stopped; true when this is news (not a retry of the same event).
    fn set_stuck(&self, stuck: Stuck) -> bool {
        let mut map = self.stuck_map();
        let news = map.get(&stuck.projection) != Some(&stuck);
        map.insert(stuck.projection.clone(), stuck);
        news
    }

    fn clear_stuck(&self, name: &str) {
        let mut map = self.stuck_map();
        if !map.is_empty() {
            map.remove(name);
        }
    }
}

/// Whether a subscriber's progress reaches `position` by `deadline`.
async fn reaches(mut rx: watch::Receiver<Position>, position: Position, deadline: tokio::time::Instant) -> bool {
    matches!(tokio::time::timeout_at(deadline, rx.wait_for(|p| *p >= position)).await, Ok(Ok(_)))
}

pub struct RunnerHandle {
    progress: Progress,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunnerHandle {
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Stops after the page in hand is committed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub struct Runner {
    store: Arc<dyn EventStore>,
    codec: EventCodec,
    read: AnyPool,
    /// Where saga checkpoints live: the store's database, which is never rebuilt.
    durable: AnyPool,
    projections: Vec<Arc<dyn Projection>>,
    indexes: Vec<Arc<dyn SelfCheckpointed>>,
    sagas: Vec<Arc<dyn Saga>>,
    /// Set on SQLite: read-model transactions of this process take turns.
    read_turns: Option<Arc<tokio::sync::Mutex<()>>>,
}

enum Subscriber {
    Projection(Arc<dyn Projection>),
    /// A read model outside SQL that commits its own checkpoint (the catalog index).
    Index(Arc<dyn SelfCheckpointed>),
    Saga(Arc<dyn Saga>),
}

impl Subscriber {
    fn handles(&self) -> EventTypes {
        match self {
            Subscriber::Projection(p) => p.handles(),
            Subscriber::Index(i) => i.handles(),
            Subscriber::Saga(s) => s.handles(),
        }
    }

    fn checkpoint_name(&self) -> String {
        match self {
            Subscriber::Projection(p) => p.name().to_string(),
            Subscriber::Index(i) => i.name().to_string(),
            Subscriber::Saga(s) => format!("saga:{}", s.name()),
        }
    }
}

impl Runner {
    pub fn new(store: Arc<dyn EventStore>, codec: EventCodec, read: AnyPool, durable: AnyPool) -> Self {
        Self { store, codec, read, durable, projections: Vec::new(), indexes: Vec::new(), sagas: Vec::new(), read_turns: None }
    }

    /// For a read database that admits one writer at a time (SQLite): the projections'
    /// transactions queue on an in-process lock instead of in SQLite's busy handler.
    pub fn one_read_writer_at_a_time(mut self, yes: bool) -> Self {
        self.read_turns = yes.then(Arc::default);
        self
    }

    pub fn index(mut self, i: Arc<dyn SelfCheckpointed>) -> Self {
        self.indexes.push(i);
        self
    }

    pub fn projection(mut self, p: Arc<dyn Projection>) -> Self {
        self.projections.push(p);
        self
    }

    pub fn saga(mut self, s: Arc<dyn Saga>) -> Self {
        self.sagas.push(s);
        self
    }

    pub fn spawn(self) -> RunnerHandle {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut positions = BTreeMap::new();
        let stuck = Arc::new(Mutex::new(BTreeMap::new()));
        let mut workers = Vec::new();
        let tail = Tail::new();
        let mut tasks = vec![tokio::spawn(tail.clone().follow(self.store.clone(), self.codec.clone(), shutdown_rx.clone()))];
        let subscribers = self
            .projections
            .into_iter()
            .map(Subscriber::Projection)
            .chain(self.indexes.into_iter().map(Subscriber::Index))
            .chain(self.sagas.into_iter().map(Subscriber::Saga));
        for sub in subscribers {
            let (tx, rx) = watch::channel(-1);
            positions.insert(sub.checkpoint_name(), rx);
            let db = match sub {
                Subscriber::Projection(_) | Subscriber::Index(_) => self.read.clone(),
                Subscriber::Saga(_) => self.durable.clone(),
            };
            let worker = Worker {
                handles: sub.handles(),
                sub,
                store: self.store.clone(),
                codec: self.codec.clone(),
                tail: tail.clone(),
                db,
                turns: self.read_turns.clone(),
            };
            workers.push((worker, tx));
        }
        let progress = Progress { positions: Arc::new(positions), stuck };
        for (worker, tx) in workers {
            tasks.push(tokio::spawn(worker.follow(tx, progress.clone(), shutdown_rx.clone())));
        }
        RunnerHandle { progress, shutdown, tasks }
    }
}

struct Worker {
    sub: Subscriber,
    /// The event types `sub` handles, asked once.
    handles: EventTypes,
    store: Arc<dyn EventStore>,
    codec: EventCodec,
    tail: Arc<Tail>,
    /// Holds this subscriber's checkpoint (and a projection's rows).
    db: AnyPool,
    turns: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Worker {
    async fn follow(self, progress: watch::Sender<Position>, all: Progress, mut shutdown: watch::Receiver<bool>) {
        let name = self.sub.checkpoint_name();
        let mut wake = self.tail.subscribe();
        let mut checkpoint = loop {
            let loaded = match &self.sub {
                Subscriber::Index(i) => i.checkpoint().await,
                _ => load_checkpoint(&self.db, &name).await.map_err(ProjectionError::from),
            };
            match loaded {
                Ok(c) => break Reached::at(c),
                Err(e) => {
                    tracing::error!(subscriber = %name, error = %e, "cannot read checkpoint; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let _ = progress.send(checkpoint.position);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match step(&self, checkpoint).await {
                Ok(Some(next)) => {
                    checkpoint = next;
                    all.clear_stuck(&name);
                    let _ = progress.send(checkpoint.position);
                    metrics::gauge!("medledger_projection_position", "projection" => name.clone()).set(checkpoint.position as f64);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(POLL) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                Err(Failed::Undecodable { reached, error }) => {
                    // Stopped at the event (everything before it applied): say why, and
                    // retry it like any failure, never past it.
                    if let Some(reached) = reached {
                        checkpoint = reached;
                        let _ = progress.send(checkpoint.position);
                        metrics::gauge!("medledger_projection_position", "projection" => name.clone()).set(checkpoint.position as f64);
                    }
                    let stuck = Stuck {
                        projection: name.clone(),
                        position: error.position,
                        event_type: error.event_type.clone(),
                        error: error.source.to_string(),
                    };
                    if all.set_stuck(stuck) {
                        metrics::counter!("medledger_projection_decode_errors_total", "projection" => name.clone()).increment(1);
                        tracing::error!(
                            subscriber = %name, position = error.position, event_type = %error.event_type, error = %error.source,
                            "an event of a type this subscriber handles does not decode; it stops there"
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                Err(Failed::Other(e)) => {
                    // Never skip: retry the same page until it applies.
                    tracing::error!(subscriber = %name, checkpoint = checkpoint.position, error = %e, "projection step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

async fn load_checkpoint(read: &AnyPool, name: &str) -> Result<Position, sqlx::Error> {
    let p: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1").bind(name).fetch_optional(read).await?;
    Ok(p.unwrap_or(0))
}

/// Moves a checkpoint from `from` to `to`; false if someone else moved it first (a
/// second server on the same database, or a replay), in which case the caller's
/// transaction must not commit.
async fn advance_checkpoint(conn: &mut sqlx::AnyConnection, name: &str, from: Position, to: Position) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query("UPDATE projection_checkpoints SET position = $3 WHERE name = $1 AND position = $2")
        .bind(name)
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    if moved.rows_affected() == 1 {
        return Ok(true);
    }
    // No row yet is position 0; the first write creates it (one statement per page
    // otherwise, where an upsert-then-update took two).
    if from != 0 {
        return Ok(false);
    }
    let created = sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    Ok(created.rows_affected() == 1)
}

/// How far a subscriber has got, and how far of that is written down. Pages with no event
/// the subscriber cares about cost no write: the checkpoint moves in memory and is
/// written with the next write, or once it is [`crate::LAZY_CHECKPOINT`] events ahead. A restart
/// therefore re-reads at most that many events, none of which changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reached {
    position: Position,
    persisted: Position,
}

impl Reached {
    fn at(position: Position) -> Self {
        Self { position, persisted: position }
    }

    fn may_skip_write(&self, last: Position) -> bool {
        last - self.persisted < crate::LAZY_CHECKPOINT
    }
}

/// The events after `from`, at most a page.
async fn page_after(worker: &Worker, from: Position) -> Result<Vec<Arc<DecodedEvent>>, ProjectionError> {
    Ok(match worker.tail.after(from, PAGE) {
        Some(events) => events,
        // Further behind than the tail reaches: catch up from the store.
        None => crate::tail::read_page(&*worker.store, &worker.codec, from).await?.into_iter().map(Arc::new).collect(),
    })
}

/// Why a step did not apply its page.
enum Failed {
    /// An event the subscriber handles does not decode; `reached`: how far the events
    /// before it took the subscriber, if there were any.
    Undecodable {
        reached: Option<Reached>,
        error: DecodeError,
    },
    Other(ProjectionError),
}

/// Applies one page after `from`; `None` when there was nothing new. When an event of
/// the page does not decode, the events before it are applied on their own, so the
/// subscriber stops right before that event.
async fn step(worker: &Worker, from: Reached) -> Result<Option<Reached>, Failed> {
    match apply_page(worker, from, None).await {
        Ok(reached) => Ok(reached),
        Err(e) => match e.decode_error().cloned() {
            None => Err(Failed::Other(e)),
            Some(error) => {
                // (The event may be another one the subscriber read, e.g. a saga loading
                // an aggregate; whatever then fails before it is retried with the rest.)
                let reached = if error.position - 1 > from.position {
                    apply_page(worker, from, Some(error.position)).await.unwrap_or_else(|e| {
                        tracing::warn!(subscriber = %worker.sub.checkpoint_name(), error = %e, "the events before an undecodable one did not apply");
                        None
                    })
                } else {
                    None
                };
                Err(Failed::Undecodable { reached, error })
            }
        },
    }
}

/// The events after `from` (before `before`, when given), at most a page.
async fn events_after(worker: &Worker, from: Position, before: Option<Position>) -> Result<Vec<Arc<DecodedEvent>>, ProjectionError> {
    let mut page = page_after(worker, from).await?;
    if let Some(before) = before {
        page.retain(|e| e.recorded.position < before);
    }
    Ok(page)
}

async fn apply_page(worker: &Worker, from: Reached, before: Option<Position>) -> Result<Option<Reached>, ProjectionError> {
    let Worker { sub, db, handles, .. } = worker;
    let mut decoded = events_after(worker, from.position, before).await?;
    let Some(mut last) = decoded.last().map(|e| e.recorded.position) else { return Ok(None) };
    let name = sub.checkpoint_name();
    // By type name alone: nothing is deserialised to decide.
    let mine = |e: &Arc<DecodedEvent>| handles.contains(e.event_type());
    match sub {
        Subscriber::Projection(p) => {
            decoded.retain(mine);
            if decoded.is_empty() && from.may_skip_write(last) {
                return Ok(Some(Reached { position: last, persisted: from.persisted }));
            }
            let _turn = match &worker.turns {
                Some(t) => {
                    let turn = t.lock().await;
                    // Whatever arrived while another read model wrote joins this page:
                    // under load a transaction then carries many events, not one.
                    decoded = events_after(worker, from.position, before).await?;
                    last = decoded.last().map_or(last, |e| e.recorded.position);
                    decoded.retain(mine);
                    Some(turn)
                }
                None => None,
            };
            // Rows and checkpoint in one transaction: exactly-once effect.
            let mut tx = db.begin().await?;
            for event in &decoded {
                p.apply(&mut tx, event).await?;
            }
            if !advance_checkpoint(&mut tx, &name, from.persisted, last).await? {
                tx.rollback().await?;
                return Ok(Some(Reached::at(load_checkpoint(db, &name).await?)));
            }
            tx.commit().await?;
            p.committed(&decoded);
        }
        Subscriber::Index(index) => {
            let through = decoded.last().map(|e| ChainHead { position: e.recorded.position, hash: e.recorded.hash });
            decoded.retain(mine);
            // The index decides itself whether the page is worth a commit.
            index.apply_page(decoded, through.unwrap_or(ChainHead::GENESIS)).await?;
        }
        Subscriber::Saga(s) => {
            // At-least-once: the checkpoint moves after each handled batch, and each
            // saga's effects are idempotent for a redelivered event.
            decoded.retain(mine);
            let mut persisted = from.persisted;
            for batch in decoded.chunks(s.batch().max(1)) {
                let Some(position) = batch.last().map(|e| e.recorded.position) else { continue };
                s.handle_batch(batch).await?;
                let mut conn = db.acquire().await?;
                if !advance_checkpoint(&mut conn, &name, persisted, position).await? {
                    return Ok(Some(Reached::at(load_checkpoint(db, &name).await?)));
                }
                persisted = position;
            }
            let reached = Reached { position: last, persisted };
            if reached.may_skip_write(last) {
                return Ok(Some(reached));
            }
            let mut conn = db.acquire().await?;
            if !advance_checkpoint(&mut conn, &name, persisted, last).await? {
                return Ok(Some(Reached::at(load_checkpoint(db, &name).await?)));
            }
        }
    }
    Ok(Some(Reached::at(last)))
}

/// Clears a projection's tables and checkpoint and replays the whole history into it,
/// all in one transaction: readers (and a live server) see the old rows until the new
/// ones are complete. `on_page` gets (position reached, head) after each page.
pub async fn rebuild(
    projection: Arc<dyn Projection>,
    store: &dyn EventStore,
    codec: &EventCodec,
    read: &AnyPool,
    mut on_page: impl FnMut(Position, Position),
) -> Result<Position, ProjectionError> {
    let head = store.head().await?.position;
    let mut tx = read.begin().await?;
    for table in projection.tables() {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await?;
    }
    let handles = projection.handles();
    let mut checkpoint = 0;
    let mut page = store.read_all(0, REPLAY_PAGE).await?;
    while let Some(last) = page.last().map(|e| e.position) {
        // Read the next page while this one is applied.
        let apply = async {
            for recorded in page.into_iter().filter(|r| handles.contains(&r.event_type)) {
                // An event that does not decode ends the replay with an error naming it.
                let decoded = codec.decode(recorded).await?;
                projection.apply(&mut tx, &decoded).await?;
            }
            Ok::<_, ProjectionError>(())
        };
        let (next, applied) = tokio::join!(store.read_all(last, REPLAY_PAGE), apply);
        applied?;
        checkpoint = last;
        on_page(checkpoint, head.max(checkpoint));
        page = next?;
    }
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(projection.name())
    .bind(checkpoint)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(checkpoint)
}

/// Every row of `table`, ordered by its first column, as JSON text: for comparing a
/// rebuilt read model with the live one row for row.
pub async fn table_snapshot(read: &AnyPool, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table} ORDER BY 1"))).fetch_all(read).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut obj = serde_json::Map::new();
            for (i, col) in row.columns().iter().enumerate() {
                let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                    serde_json::json!(v)
                } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                    serde_json::json!(v)
                } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                    serde_json::json!(v)
                } else {
                    serde_json::Value::String("<unreadable>".into())
                };
                obj.insert(col.name().to_string(), value);
            }
            serde_json::Value::Object(obj).to_string()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_response_is_not_held_by_a_read_model_it_does_not_read() {
        let (fast, fast_rx) = watch::channel(0);
        let (_stuck, stuck_rx) = watch::channel(0);
        let progress =
            Progress { positions: Arc::new(BTreeMap::from([("fast".into(), fast_rx), ("stuck".into(), stuck_rx)])), stuck: Arc::default() };
        let wait = Duration::from_secs(5);
        let waiting = tokio::spawn({
            let progress = progress.clone();
            async move { progress.caught_up_on(&["fast"], 7, wait).await }
        });
        fast.send_replace(7);
        let started = tokio::time::Instant::now();
        assert!(waiting.await.unwrap(), "the read model it reads reached the position");
        assert!(started.elapsed() < wait / 2, "answered once `fast` was there, not when `stuck` gave up");
        // Waiting for every read model is held by the stuck one until the timeout.
        assert!(!progress.wait_for(7, Duration::from_millis(50)).await);
        assert!(!progress.caught_up_on(&["fast", "stuck"], 7, Duration::from_millis(50)).await);
        assert!(!progress.caught_up_on(&["nonesuch"], 0, wait).await, "an unknown name is not a read model that caught up");
    }
}
