//! The newest events, read from the store and decoded once for all of a runner's
//! subscribers. Without it each of a dozen read models and sagas would query the store
//! and decode the same event on every append; with it a caught-up subscriber takes its
//! page from memory, and only one behind by more than the tail holds reads the store.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use medledger_application::codec::{DecodedEvent, EventCodec};
use medledger_application::ports::{EventStore, Position};
use tokio::sync::watch;

use crate::runner::PAGE;

/// Events kept in memory: a page and then some.
const CAPACITY: usize = 2_000;

pub(crate) struct Tail {
    ring: RwLock<Ring>,
    /// The last position the tail holds; subscribers wake when it moves.
    reached: watch::Sender<Position>,
}

struct Ring {
    /// Every event after `start`, up to the tail's position, is in `events`; `None`
    /// until the tail has found where the history ends.
    start: Option<Position>,
    events: VecDeque<Arc<DecodedEvent>>,
}

impl Tail {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { ring: RwLock::new(Ring { start: None, events: VecDeque::new() }), reached: watch::channel(-1).0 })
    }

    /// Wakes whenever the tail moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Position> {
        self.reached.subscribe()
    }

    /// Up to `limit` events after `after`, if the tail covers that range: `Some(empty)`
    /// when there is nothing newer, `None` when the caller must read the store.
    pub(crate) fn after(&self, after: Position, limit: usize) -> Option<Vec<Arc<DecodedEvent>>> {
        let ring = self.ring.read().ok()?;
        let start = ring.start?;
        if after < start {
            return None;
        }
        let from = ring.events.partition_point(|e| e.recorded.position <= after);
        Some(ring.events.iter().skip(from).take(limit).cloned().collect())
    }

    fn push(&self, page: Vec<DecodedEvent>) {
        let Some(last) = page.last().map(|e| e.recorded.position) else { return };
        if let Ok(mut ring) = self.ring.write() {
            ring.events.extend(page.into_iter().map(Arc::new));
            while ring.events.len() > CAPACITY {
                if let Some(evicted) = ring.events.pop_front() {
                    ring.start = Some(evicted.recorded.position);
                }
            }
        }
        self.reached.send_replace(last);
    }

    /// Follows the store from its current head until `shutdown`.
    pub(crate) async fn follow(self: Arc<Self>, store: Arc<dyn EventStore>, codec: EventCodec, mut shutdown: watch::Receiver<bool>) {
        let mut wake = store.watch();
        let mut at = loop {
            match store.head().await {
                Ok(head) => break head.position,
                Err(e) => {
                    tracing::warn!(error = %e, "event tail: cannot read the head; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        if let Ok(mut ring) = self.ring.write() {
            ring.start = Some(at);
        }
        self.reached.send_replace(at);
        let mut found_nothing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Read again at once only when the store says it is ahead: re-reading after
            // every page to learn that nothing followed cost a query per append.
            let behind = *wake.borrow_and_update() > at;
            if found_nothing || !behind {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(crate::runner::POLL) => {}
                    _ = shutdown.changed() => return,
                }
            }
            match read_page(&*store, &codec, at).await {
                Ok(page) if page.is_empty() => found_nothing = true,
                Ok(page) => {
                    found_nothing = false;
                    at = page.last().map_or(at, |e| e.recorded.position);
                    self.push(page);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event tail: read failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

/// The page of events after `after`, decoded: what the tail holds, and what a
/// subscriber behind the tail reads for itself.
pub(crate) async fn read_page(
    store: &dyn EventStore,
    codec: &EventCodec,
    after: Position,
) -> Result<Vec<DecodedEvent>, crate::ProjectionError> {
    let recorded = match store.read_recent(after, PAGE) {
        Some(recent) => recent,
        None => store.read_all(after, PAGE).await?,
    };
    let mut page = Vec::with_capacity(recorded.len());
    for recorded in recorded {
        page.push(codec.decode(recorded).await?);
    }
    Ok(page)
}
