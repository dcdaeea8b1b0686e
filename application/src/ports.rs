//! The ports: what the use cases need from the outside world.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medledger_domain::identity::role::Roles;
use medledger_domain::identity::user::UserId;
use medledger_domain::values::PasswordHash;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

/// A global position in the history: 1 for the first event, gapless.
pub type Position = i64;

/// What the writer expects a stream's version to be (the number of its events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    Any,
    NoStream,
    Exact(i64),
}

impl ExpectedVersion {
    pub fn admits(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    /// The exact bytes that are stored and hashed (JSON text).
    pub payload: String,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct StreamWrite {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: String,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: String,
    pub metadata: String,
    /// Microseconds since the Unix epoch; an integer so that it hashes exactly.
    pub recorded_at_us: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl RecordedEvent {
    pub fn recorded_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.recorded_at_us).unwrap_or_default()
    }
}

/// The end of the hash chain as sealed by the last committed append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub position: Position,
    pub hash: [u8; 32],
}

impl ChainHead {
    pub const GENESIS: ChainHead = ChainHead { position: 0, hash: [0; 32] };

    /// `POSITION:HEX`, what `medledger verify --digest` prints.
    pub fn digest(&self) -> String {
        format!("{}:{}", self.position, hex::encode(self.hash))
    }
}

/// The outcome of an append: the positions its events hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_position: Position,
    pub last_position: Position,
    /// True when every event id was already stored: a retried command, nothing written.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict { stream_id: String, expected: ExpectedVersion, actual: i64 },
    #[error("event {0} is already stored with different content or stream")]
    DuplicateEvent(Uuid),
    #[error("nothing to append")]
    Empty,
    #[error("the personal data of {0} has been erased; nothing new is stored for it")]
    Erased(String),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
}

/// The event store: one port, a PostgreSQL and a SQLite adapter, one conformance suite.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends every write atomically (all streams or none).
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Appended, StoreError>;

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with a position greater than `after`, in global order. Never skips: a
    /// position is readable only once every smaller position is committed.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// `read_all` from memory, for subscribers in the appending process: the events
    /// after `after` when this process committed the very next one itself and still
    /// holds it; `None` means read the store. Never a gap, never a guess. Auditing
    /// reads (`verify`) use `read_all`, which always reads what is stored.
    fn read_recent(&self, _after: Position, _limit: usize) -> Option<Vec<RecordedEvent>> {
        None
    }

    async fn head(&self) -> Result<ChainHead, StoreError>;

    /// The highest position known committed; changes wake subscribers (who re-query).
    fn watch(&self) -> watch::Receiver<Position>;

    async fn ping(&self) -> Result<(), StoreError>;
}

/// Per-subject keys for personal data (crypto-shredding).
#[async_trait]
pub trait PersonalDataVault: Send + Sync {
    async fn seal(&self, subject: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// `None` once the subject's key has been erased.
    async fn open(&self, subject: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    async fn erase(&self, subject: &str) -> Result<(), StoreError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Integer ids for the contracts that expose them (users, scans, tasks...).
#[async_trait]
pub trait IdGenerator: Send + Sync {
    async fn next_id(&self, sequence: &str) -> Result<i64, StoreError>;
}

/// What an adapter's own failure holds: its library's error, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError(#[source] pub Cause);

pub trait PasswordHasher: Send + Sync {
    fn hash(&self, password: &str) -> Result<PasswordHash, HashError>;
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Stable per message so that a redelivered saga event sends it once.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot write the mail to the outbox")]
    Outbox(#[source] std::io::Error),
    #[error("the mail cannot be written as a message")]
    Message(#[source] Cause),
    #[error("the mail server did not take the mail")]
    Transport(#[source] Cause),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub user_id: UserId,
    /// The roles at issue, for clients to read. Never trusted: a request is judged on
    /// the roles the history holds now (`access::AccessModel`).
    pub roles: Roles,
    pub session_id: Uuid,
    /// Where the history stood when the token was issued: a server judging the token
    /// first waits until its view of accounts and sessions has got that far.
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub token_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token")]
pub struct SigningError(#[source] pub Cause);

/// Issues and checks signed tokens (JWT HS256 in production).
pub trait TokenService: Send + Sync {
    fn issue_access(&self, claims: &AccessClaims) -> Result<String, SigningError>;
    fn issue_refresh(&self, claims: &RefreshClaims, expires_at: DateTime<Utc>) -> Result<String, SigningError>;
    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError>;
    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError>;
    fn refresh_ttl(&self) -> chrono::Duration;
}

/// The query side that command handlers need: login identifier → user id.
#[async_trait]
pub trait UserDirectory: Send + Sync {
    async fn find_by_login(&self, identifier: &str) -> Result<Option<UserId>, StoreError>;
}

/// Bytes as blobs are written and read: chunks, never a whole file. A failed read of the
/// source is an `Err` item; the end of the stream is the end of the blob.
pub type ByteStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// Which bytes of a blob to read, as HTTP's `Range: bytes=…` names them (one range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole blob.
    Full,
    /// `first-last`, both inclusive; `last` past the end means up to the end.
    Span { first: u64, last: u64 },
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The bytes `self` names in a blob of `size` bytes (`start..end`), or None when it
    /// names none (416 in HTTP). Adapters without native ranges use this; one with
    /// them (S3's `Range` header) must agree with it.
    pub fn resolve(self, size: u64) -> Option<std::ops::Range<u64>> {
        match self {
            ByteRange::Full => Some(0..size),
            _ if size == 0 => None,
            ByteRange::Span { first, last } => (first <= last && first < size).then(|| first..last.min(size - 1) + 1),
            ByteRange::From(first) => (first < size).then_some(first..size),
            // A suffix longer than the blob is refused, as the HTTP layer did before
            // blobs were read through this port (tower-http's `ServeFile`).
            ByteRange::Last(n) => (n > 0 && n <= size).then(|| size - n..size),
        }
    }
}

/// A blob opened for reading: its whole size and the requested bytes of it.
pub struct BlobRead {
    /// The size of the whole blob, whatever range was asked for.
    pub size: u64,
    /// The bytes `body` yields, within `0..size`.
    pub range: std::ops::Range<u64>,
    /// When the blob was written, if the store knows (HTTP `Last-Modified`).
    pub modified: Option<std::time::SystemTime>,
    /// A tag that changes whenever the blob is replaced (HTTP `ETag`, without quotes).
    pub version: Option<String>,
    pub body: ByteStream,
}

/// How a blob is written: the most bytes it may have, and whether the store computes
/// its SHA-256 on the way. Content-addressed blobs (dataset items) need the hash; an
/// archive rebuilt from items does not, and hashing a gibibyte takes a core half a
/// second (BENCHMARKS.md, "The reshaping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobWrite {
    pub limit: Option<u64>,
    pub sha256: bool,
}

impl BlobWrite {
    /// Hashed, no limit.
    pub const HASHED: Self = Self { limit: None, sha256: true };
    /// Counted only, no limit.
    pub const UNHASHED: Self = Self { limit: None, sha256: false };

    /// A body past `limit` bytes stores nothing.
    pub const fn at_most(self, limit: u64) -> Self {
        Self { limit: Some(limit), ..self }
    }
}

/// A blob once written whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub size: u64,
    /// Its SHA-256, when the write asked for it (`BlobWrite::sha256`).
    pub sha256: Option<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Keys are ours (`items/…`, `collections/…`): anything else is a bug, not input.
    #[error("not a blob key: {0:?}")]
    BadKey(String),
    #[error("the blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The stream being stored failed (a client gone, an archive item missing); nothing
    /// was stored.
    #[error("the bytes to store could not be read")]
    Source(#[source] std::io::Error),
    #[error("no bytes of the requested range lie within the blob's {size}")]
    RangeNotSatisfiable { size: u64 },
    #[error("blob store unavailable")]
    Unavailable(#[source] std::io::Error),
}

/// Where file bytes live (dataset items, collection archives, models), by key. Keys are
/// ours (`items/…`, `collections/…`), never a user's file name. Built for a local
/// directory and an object store alike: writes go to a temporary object made final
/// only once whole (an S3 multipart upload completed at the end), reads take ranges.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key`, counting it (and hashing it, if `write` asks) on the
    /// way. Readers see the previous blob or the whole new one, never a part: the bytes
    /// go to a temporary object made final only once `body` has ended cleanly within
    /// `write.limit` (if any). A failed `body` or one past the limit stores nothing.
    async fn put_stream(&self, key: &str, body: ByteStream, write: BlobWrite) -> Result<StoredBlob, BlobError>;
    /// The bytes `range` names of the blob under `key`, or None if there is none.
    async fn open(&self, key: &str, range: ByteRange) -> Result<Option<BlobRead>, BlobError>;
    /// Removes the blob; removing a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

/// An image decoded to 8-bit RGB, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// An uploaded image that passed the checks.
#[derive(Debug, Clone)]
pub struct CheckedImage {
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    pub image: RgbImage,
}

/// What an upload's header says, read without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why an image was refused: a sentence a client can act on (the adapter's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImageRefused(pub String);

/// Reads uploaded images. Refusals are sentences a client can act on.
pub trait ImageDecoder: Send + Sync {
    /// The format (JPEG or PNG) and size from the header alone, refused when over the
    /// limits: cheap and allocation-free, so it runs before a request waits for its turn
    /// to decode, and an image bomb (a small file of a huge image) is refused at once.
    fn check(&self, bytes: &[u8]) -> Result<ImageHeader, ImageRefused>;
    /// The whole image as RGB. The decoder's own reading of the header is held to the
    /// same limits before any pixel is allocated: memory for one decode is bounded by
    /// the pixel limit whatever `check` made of the file.
    fn decode(&self, bytes: &[u8]) -> Result<CheckedImage, ImageRefused>;
}

/// What a client is told when the runtime cannot load a model or fails a run. The
/// runtime's own message (its source files, the model's node names, for external data
/// the server's absolute paths) goes to the server's log, with the model's id.
pub const MODEL_NOT_LOADED: &str = "The model could not be loaded.";
pub const MODEL_NOT_RUN: &str = "The model could not be run.";

/// Why a model did not load or run: a sentence a client may read (see `InferenceEngine`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Runs ONNX models. Loading checks a graph against its manifest; running is blocking
/// (CPU-bound): callers keep it off the async runtime. Errors are sentences a client may
/// read: the adapter's own (a manifest that does not fit the graph, a model that refers
/// to other files), or `MODEL_NOT_LOADED` / `MODEL_NOT_RUN` for whatever the runtime
/// said, which the adapter logs. A model is not trusted (admins upload them): the adapter
/// bounds its memory and the time of each run, a run past them failing with
/// `MODEL_NOT_RUN`.
pub trait InferenceEngine: Send + Sync {
    fn load(
        &self,
        model_id: medledger_domain::inference::ModelId,
        manifest: &medledger_domain::inference::ModelManifest,
        onnx: &[u8],
    ) -> Result<(), EngineError>;
    fn is_loaded(&self, model_id: medledger_domain::inference::ModelId) -> bool;
    /// `image` resized and normalised as the model's manifest says. Kept apart from
    /// `run` so that this CPU work stays off the model threads, which are the bottleneck.
    fn input(&self, model_id: medledger_domain::inference::ModelId, image: &RgbImage) -> Result<ModelInput, EngineError>;
    /// Runs the model on inputs made by `input` and returns each one's output tensor,
    /// flattened, in order. A graph that takes a batch dimension runs them all at once,
    /// which costs less per image than one run each; any other runs them one by one.
    fn run(&self, model_id: medledger_domain::inference::ModelId, inputs: &[&ModelInput]) -> Result<Vec<Vec<f32>>, EngineError>;
}

/// A model's input tensor: `[1, 3, height, width]` floats, channel planes in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}
