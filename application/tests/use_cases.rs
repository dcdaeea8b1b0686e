//! Use cases given/when/then, against the in-memory event store: no database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medledger_application::AppError;
use medledger_application::catalog::Catalog;
use medledger_application::catalog::CatalogError;
use medledger_application::codec::EventCodec;
use medledger_application::identity::AccountError;
use medledger_application::identity::accounts::{AccountKeys, Accounts, Registration};
use medledger_application::ledger::Ledger;
use medledger_application::metadata::CommandContext;
use medledger_application::ports::{
    AccessClaims, Clock, EventStore, ExpectedVersion, HashError, IdGenerator, NewEvent, PasswordHasher, PersonalDataVault, RefreshClaims,
    SigningError, StoreError, StreamWrite, TokenError, TokenService, UserDirectory,
};
use medledger_application::store::InMemoryEventStore;
use medledger_domain::catalog::{DatasetEvent, DatasetFields};
use medledger_domain::identity::role::{Role, Roles};
use medledger_domain::identity::user::UserId;
use medledger_domain::values::PasswordHash;

/// Personal data "sealed" as is, under a subject whose key can be erased.
#[derive(Default)]
struct PlainVault(Mutex<HashMap<String, bool>>);

#[async_trait]
impl PersonalDataVault for PlainVault {
    async fn seal(&self, subject: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.0.lock().map_err(|_| StoreError::Unavailable("vault".into()))?.entry(subject.into()).or_insert(true);
        Ok(plaintext.to_vec())
    }
    async fn open(&self, subject: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let live = self.0.lock().map_err(|_| StoreError::Unavailable("vault".into()))?.get(subject).copied().unwrap_or(false);
        Ok(live.then(|| sealed.to_vec()))
    }
    async fn erase(&self, subject: &str) -> Result<(), StoreError> {
        self.0.lock().map_err(|_| StoreError::Unavailable("vault".into()))?.insert(subject.into(), false);
        Ok(())
    }
}

#[derive(Default)]
struct Counter(AtomicI64);

#[async_trait]
impl IdGenerator for Counter {
    async fn next_id(&self, _sequence: &str) -> Result<i64, StoreError> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_268_800, 0).unwrap_or_default()
    }
}

struct PlainHasher;

impl PasswordHasher for PlainHasher {
    fn hash(&self, password: &str) -> Result<PasswordHash, HashError> {
        Ok(PasswordHash::new(format!("plain:{password}")))
    }
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        hash.as_str() == format!("plain:{password}")
    }
}

struct NoTokens;

impl TokenService for NoTokens {
    fn issue_access(&self, _: &AccessClaims) -> Result<String, SigningError> {
        Ok("access".into())
    }
    fn issue_refresh(&self, _: &RefreshClaims, _: DateTime<Utc>) -> Result<String, SigningError> {
        Ok("refresh".into())
    }
    fn verify_access(&self, _: &str) -> Result<AccessClaims, TokenError> {
        Err(TokenError::Invalid)
    }
    fn verify_refresh(&self, _: &str) -> Result<RefreshClaims, TokenError> {
        Err(TokenError::Invalid)
    }
    fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(1)
    }
}

/// A login directory that has not caught up with anything: the claim streams alone
/// must keep an identifier unique.
struct BehindDirectory;

#[async_trait]
impl UserDirectory for BehindDirectory {
    async fn find_by_login(&self, _: &str) -> Result<Option<UserId>, StoreError> {
        Ok(None)
    }
}

struct World {
    store: Arc<InMemoryEventStore>,
    ledger: Ledger,
    ids: Arc<Counter>,
}

fn world() -> World {
    let store = Arc::new(InMemoryEventStore::new());
    let ledger = Ledger::new(store.clone(), EventCodec::new(Arc::new(PlainVault::default())));
    World { store, ledger, ids: Arc::default() }
}

fn dataset(slug: &str, title: &str) -> DatasetFields {
    serde_json::from_value(serde_json::json!({"slug": slug, "title": title, "modality": ["CT"], "area": "chest"})).expect("fields")
}

#[tokio::test]
async fn given_a_dataset_when_another_takes_its_slug_then_it_is_refused_and_nothing_is_written() {
    let w = world();
    let catalog = Catalog::new(w.ledger.clone(), w.ids.clone());
    let ctx = CommandContext::system();
    let (id, position) = catalog.create(dataset("chest-ct", "Chest CT"), &ctx).await.expect("created");
    assert_eq!(position, 2, "the slug's claim and the dataset, in one append");

    let refused = catalog.create(dataset("chest-ct", "Another"), &ctx).await.expect_err("slug taken");
    assert!(matches!(refused, AppError::Catalog(CatalogError::SlugTaken)), "{refused:?}");
    assert_eq!(w.store.head().await.expect("head").position, 2, "nothing written");
    assert_eq!(catalog.find_slug("chest-ct").await.expect("slug"), Some(id));

    // Without a slug, one is derived from the title: the next free one.
    let (other, _) = catalog.create(dataset("", "Chest CT"), &ctx).await.expect("derived");
    let events = w.store.read_stream(&medledger_domain::catalog::stream_id(other)).await.expect("stream");
    let decoded = w.ledger.decode(events[0].clone()).await.expect("decoded");
    let Ok(Some(DatasetEvent::DatasetCreated { fields, .. })) = decoded.to_domain::<DatasetEvent>() else { panic!("{decoded:?}") };
    assert_eq!(fields.slug, "chest-ct-2");
}

#[tokio::test]
async fn given_a_registered_email_when_it_registers_again_then_its_claim_refuses_it() {
    let w = world();
    let accounts = Accounts::new(
        AccountKeys { identifiers: b"ids".to_vec(), reset: b"reset".to_vec(), cookies: b"cookies".to_vec() },
        w.ledger.clone(),
        Arc::new(PlainHasher),
        Arc::new(NoTokens),
        w.ids.clone(),
        Arc::new(BehindDirectory),
        Arc::new(FixedClock),
    );
    let form = |email: &str, username: &str| Registration {
        email: email.into(),
        username: Some(username.into()),
        password: "correct horse battery".into(),
        first_name: "Ann".into(),
        last_name: "Lee".into(),
        clinic_name: String::new(),
        roles: Roles::new([Role::Doctor]),
    };
    let ctx = CommandContext::system();
    let (first, _) = accounts.register(form("ann@example.org", "ann"), &ctx).await.expect("registered");
    let head = w.store.head().await.expect("head").position;

    let again = accounts.register(form("ANN@example.org", "ann2"), &ctx).await.expect_err("email claimed");
    assert!(matches!(again, AppError::Account(AccountError::EmailTaken)), "{again:?}");
    let same_name = accounts.register(form("bob@example.org", "Ann"), &ctx).await.expect_err("username claimed");
    assert!(matches!(same_name, AppError::Account(AccountError::UsernameTaken)), "{same_name:?}");
    assert_eq!(w.store.head().await.expect("head").position, head, "a refused registration writes nothing");

    let (user, version) =
        w.ledger.load::<medledger_domain::identity::user::User>(&medledger_domain::identity::user::stream_id(first)).await.expect("user");
    assert!(user.exists());
    assert_eq!(version, 1);
}

#[tokio::test]
async fn a_stored_event_of_a_drifted_schema_is_an_error_not_a_foreign_event() {
    let w = world();
    // A DatasetCreated without its fields: a type this code knows, in a shape it does not.
    let drifted = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "DatasetCreated".into(),
        schema_version: 1,
        payload: r#"{"dataset_id": 9}"#.into(),
        metadata: "{}".into(),
    };
    let write = StreamWrite { stream_id: "dataset-9".into(), expected: ExpectedVersion::NoStream, events: vec![drifted] };
    w.store.append(vec![write]).await.expect("appended");
    let recorded = w.store.read_all(0, 1).await.expect("read").remove(0);
    let decoded = w.ledger.decode(recorded).await.expect("payload is JSON");

    let error = decoded.to_domain::<DatasetEvent>().expect_err("drifted");
    assert_eq!((error.position, error.event_type.as_str()), (1, "DatasetCreated"));
    assert!(std::error::Error::source(&error).is_some_and(|s| s.to_string().contains("fields")), "{error:?}");
    // Another enum's subscriber is not concerned.
    assert!(matches!(decoded.to_domain::<medledger_domain::identity::user::UserEvent>(), Ok(None)));
    // Loading the aggregate fails loudly too.
    let loaded = w.ledger.load::<medledger_domain::catalog::Dataset>("dataset-9").await;
    assert!(matches!(loaded, Err(AppError::Decode(_))), "{:?}", loaded.err());
}
