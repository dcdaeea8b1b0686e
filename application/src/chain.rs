//! The hash chain over the whole history.
//!
//! Writers are serialised on the chain head, so one global chain covers every event:
//! each event's hash commits to the previous event's hash, its position, its stream
//! and version, and the exact bytes stored. Verification therefore detects an edited,
//! deleted, inserted or reordered event; a deleted tail shows up against the sealed
//! head (and against a digest the auditor kept outside the database).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ports::{ChainHead, Position, RecordedEvent};

pub struct HashInput<'a> {
    pub position: Position,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at_us: i64,
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

pub fn event_hash(prev: &[u8; 32], e: &HashInput<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"medledger-event-v1");
    h.update(prev);
    h.update(e.position.to_be_bytes());
    put_str(&mut h, e.stream_id);
    h.update(e.version.to_be_bytes());
    h.update(e.event_id.as_bytes());
    put_str(&mut h, e.event_type);
    h.update(e.schema_version.to_be_bytes());
    put_str(&mut h, e.payload);
    put_str(&mut h, e.metadata);
    h.update(e.recorded_at_us.to_be_bytes());
    h.finalize().into()
}

impl<'a> From<&'a RecordedEvent> for HashInput<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        HashInput {
            position: e.position,
            stream_id: &e.stream_id,
            version: e.version,
            event_id: e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            payload: &e.payload,
            metadata: &e.metadata,
            recorded_at_us: e.recorded_at_us,
        }
    }
}

/// The hash `e` must carry when it follows an event hashed `prev`.
pub fn recorded_hash(prev: &[u8; 32], e: &RecordedEvent) -> [u8; 32] {
    event_hash(prev, &HashInput::from(e))
}

/// Where and why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at position {position}: {reason}")]
pub struct ChainBreak {
    pub position: Position,
    pub reason: String,
}

/// Checks events fed in global order, one at a time, so a large history streams.
#[derive(Default)]
pub struct ChainVerifier {
    last: Option<ChainHead>,
    stream_versions: HashMap<String, i64>,
    checked: u64,
}

impl ChainVerifier {
    pub fn push(&mut self, e: &RecordedEvent) -> Result<(), ChainBreak> {
        let prev = self.last.unwrap_or(ChainHead::GENESIS);
        let fail = |reason: String| Err(ChainBreak { position: e.position, reason });
        if e.position != prev.position + 1 {
            return fail(format!(
                "expected position {} after {}: an event was deleted, inserted or moved",
                prev.position + 1,
                prev.position
            ));
        }
        if e.prev_hash != prev.hash {
            return fail("previous-hash link does not match the preceding event".into());
        }
        if recorded_hash(&prev.hash, e) != e.hash {
            return fail("content does not match its hash: the event was edited".into());
        }
        let version = self.stream_versions.entry(e.stream_id.clone()).or_insert(0);
        if e.version != *version + 1 {
            return fail(format!("stream {} jumps from version {} to {}", e.stream_id, version, e.version));
        }
        *version = e.version;
        self.last = Some(ChainHead { position: e.position, hash: e.hash });
        self.checked += 1;
        Ok(())
    }

    /// Compares the verified end with the sealed head: a deleted tail fails here.
    pub fn finish(self, sealed: &ChainHead) -> Result<VerifyReport, ChainBreak> {
        let end = self.last.unwrap_or(ChainHead::GENESIS);
        if end != *sealed {
            return Err(ChainBreak {
                position: end.position + 1,
                reason: format!(
                    "the history ends at {} but the sealed head is {}: events at the tail were deleted or the head was rewritten",
                    end.digest(),
                    sealed.digest()
                ),
            });
        }
        Ok(VerifyReport { events: self.checked, head: end })
    }

    /// The end of the chain verified so far (genesis before the first event).
    pub fn current(&self) -> ChainHead {
        self.last.unwrap_or(ChainHead::GENESIS)
    }
}

/// Why verification could not say yes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    #[error(transparent)]
    Store(#[from] crate::ports::StoreError),
}

/// Verifies the whole history in the store against its sealed head, page by page.
/// `on_page` sees the position reached (for progress output).
///
/// Every stored event is checked, including any beyond the sealed head: events and
/// head commit together, so an event past the head can only have been forged. Appends
/// that land while this runs are verified too.
pub async fn verify_store(store: &dyn crate::ports::EventStore, mut on_page: impl FnMut(Position)) -> Result<VerifyReport, VerifyError> {
    let mut verifier = ChainVerifier::default();
    loop {
        loop {
            let page = store.read_all(verifier.current().position, 1_000).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                verifier.push(e)?;
            }
            on_page(verifier.current().position);
        }
        let sealed = store.head().await?;
        let reached = verifier.current().position;
        if reached > sealed.position {
            return Err(ChainBreak {
                position: sealed.position + 1,
                reason: format!("events exist beyond the sealed head {}: they were inserted behind the store's back", sealed.digest()),
            }
            .into());
        }
        if reached == sealed.position {
            return Ok(verifier.finish(&sealed)?);
        }
        // The head moved while we read: new appends, read on. If the events under the
        // head are missing, the next page is empty and `finish` reports the tail.
        let next = store.read_all(reached, 1).await?;
        if next.is_empty() {
            return Ok(verifier.finish(&sealed)?);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub head: ChainHead,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<RecordedEvent> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|p| {
                let mut e = RecordedEvent {
                    position: p,
                    stream_id: format!("s-{}", p % 2),
                    version: (p + 1) / 2,
                    event_id: Uuid::from_u128(p as u128),
                    event_type: "T".into(),
                    schema_version: 1,
                    payload: format!("{{\"n\":{p}}}"),
                    metadata: "{}".into(),
                    recorded_at_us: p * 1000,
                    prev_hash: prev,
                    hash: [0; 32],
                };
                e.hash = recorded_hash(&prev, &e);
                prev = e.hash;
                e
            })
            .collect()
    }

    fn verify(events: &[RecordedEvent], head: ChainHead) -> Result<VerifyReport, ChainBreak> {
        let mut v = ChainVerifier::default();
        for e in events {
            v.push(e)?;
        }
        v.finish(&head)
    }

    fn head(events: &[RecordedEvent]) -> ChainHead {
        let last = events.last().unwrap();
        ChainHead { position: last.position, hash: last.hash }
    }

    #[test]
    fn intact_chain_verifies() {
        let events = chain(6);
        assert_eq!(verify(&events, head(&events)).unwrap().events, 6);
    }

    #[test]
    fn edited_payload_is_found_at_its_position() {
        let mut events = chain(6);
        let h = head(&events);
        events[3].payload = "{\"n\":99}".into();
        assert_eq!(verify(&events, h).unwrap_err().position, 4);
    }

    #[test]
    fn deleted_event_is_found() {
        let mut events = chain(6);
        let h = head(&events);
        events.remove(2);
        assert_eq!(verify(&events, h).unwrap_err().position, 4);
    }

    #[test]
    fn swapped_events_are_found() {
        let mut events = chain(6);
        let h = head(&events);
        events.swap(1, 2);
        assert_eq!(verify(&events, h).unwrap_err().position, 3);
    }

    #[test]
    fn deleted_tail_is_found_against_the_sealed_head() {
        let mut events = chain(6);
        let h = head(&events);
        events.truncate(4);
        assert_eq!(verify(&events, h).unwrap_err().position, 5);
    }
}
