//! Who may do what, as the history says now: every user and every open session, kept
//! in memory from the events. Each request is judged on the caller's current roles,
//! activation and session (issue 15: a token's own claims are never trusted beyond
//! its signature), at the cost of a map lookup, not a database round trip.
//!
//! The runner feeds the model like any read model; it is rebuilt from the start of the
//! history when a process starts. A token carries the history position it was issued
//! at, and judging it first waits until the model has got that far, so a token issued
//! by another process (or an instant ago by this one) is judged on a view that
//! already holds its session.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use medledger_domain::Aggregate;
use medledger_domain::identity::role::Roles;
use medledger_domain::identity::session::SessionEvent;
use medledger_domain::identity::user::{User, UserEvent, UserId};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use medledger_domain::EventTypes;

use crate::codec::{DecodeError, DecodedEvent};
use crate::ports::{AccessClaims, Position, StoreError, UserDirectory};

/// How long judging a token waits for the model to reach the token's position.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// The caller of a request, as the history says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    /// The roles the user holds now (not those in the token).
    pub roles: Roles,
    pub session_id: Uuid,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.is_admin()
    }
}

/// Why a request's credentials do not stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Logged out, revoked for token reuse, expired, ended by a password change, or
    /// never started.
    #[error("the session has ended")]
    SessionEnded,
    #[error("the account is inactive")]
    Inactive,
    /// This process has not yet read the history as far as the token was issued.
    #[error("the server is catching up with the history")]
    Behind,
}

#[derive(Debug, Clone)]
struct OpenSession {
    user_id: UserId,
    credentials_version: u64,
    expires_at: DateTime<Utc>,
    cookie_hash: Option<String>,
}

#[derive(Default)]
struct State {
    /// Each user's aggregate and its stream version.
    users: HashMap<UserId, (User, i64)>,
    sessions: HashMap<Uuid, OpenSession>,
    /// Browser sessions: SHA-256 of the cookie → session.
    cookies: HashMap<String, Uuid>,
    /// Login identifiers (lower-cased): emails, and usernames where set.
    emails: HashMap<String, UserId>,
    usernames: HashMap<String, UserId>,
    /// Sessions held after the last sweep of expired ones.
    swept_at: usize,
}

pub struct AccessModel {
    state: RwLock<State>,
    reached: watch::Sender<Position>,
}

/// SHA-256 (hex) of a browser session's secret: what the history records of it.
pub fn cookie_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl AccessModel {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { state: RwLock::new(State::default()), reached: watch::channel(0).0 })
    }

    /// The last history position applied.
    pub fn position(&self) -> Position {
        *self.reached.borrow()
    }

    /// The event types the model is built from.
    pub fn handles() -> EventTypes {
        EventTypes::of::<UserEvent>().and(EventTypes::of::<SessionEvent>())
    }

    /// Applies the page's events of the types it handles (in order) and records that the
    /// model has read the history through `through`. Every event is decoded before any
    /// is applied: one that does not decode leaves the model as it was, so the page can
    /// be applied again up to that event without applying anything twice.
    pub fn apply(&self, events: &[Arc<DecodedEvent>], through: Position) -> Result<(), DecodeError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            if let Some(e) = event.to_domain::<UserEvent>()? {
                decoded.push((event, Read::User(e)));
            } else if let Some(e) = event.to_domain::<SessionEvent>()? {
                decoded.push((event, Read::Session(e)));
            }
        }
        if let Ok(mut state) = self.state.write() {
            for (event, read) in decoded {
                state.apply(event, read);
            }
            state.sweep(Utc::now());
        }
        self.reached.send_if_modified(|p| {
            let moved = through > *p;
            *p = (*p).max(through);
            moved
        });
        Ok(())
    }

    /// A user's aggregate and stream version, as far as the model has read.
    pub fn user(&self, user_id: UserId) -> Option<(User, i64)> {
        self.state.read().ok()?.users.get(&user_id).cloned()
    }

    /// Judges an access token's claims (its signature already checked).
    pub async fn judge(&self, claims: &AccessClaims) -> Result<Caller, Denied> {
        self.reach(claims.position).await?;
        let state = self.state.read().map_err(|_| Denied::Behind)?;
        state.judge(claims.session_id, Some(claims.user_id), Utc::now())
    }

    /// Judges a browser session by its secret, once the model has read as far as the
    /// login's `position` (which the caller has authenticated: `Accounts::judge_browser`).
    pub async fn judge_cookie(&self, secret: &str, position: Position) -> Result<Caller, Denied> {
        self.reach(position).await?;
        let state = self.state.read().map_err(|_| Denied::Behind)?;
        let session_id = *state.cookies.get(&cookie_hash(secret)).ok_or(Denied::SessionEnded)?;
        state.judge(session_id, None, Utc::now())
    }

    /// Judges a caller again, as the history holds them now: for a request whose body
    /// took long to arrive after its credentials were judged.
    pub fn recheck(&self, caller: &Caller) -> Result<Caller, Denied> {
        let state = self.state.read().map_err(|_| Denied::Behind)?;
        state.judge(caller.session_id, Some(caller.user_id), Utc::now())
    }

    /// Waits until the model has applied `position`.
    pub async fn reach(&self, position: Position) -> Result<(), Denied> {
        if self.position() >= position {
            return Ok(());
        }
        let mut rx = self.reached.subscribe();
        match tokio::time::timeout(CATCH_UP_WAIT, rx.wait_for(|p| *p >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Denied::Behind),
        }
    }
}

/// The login directory, from memory: a lookup costs the same whether or not the
/// account exists (an SQL miss took measurably longer than a hit, decision #55).
#[async_trait::async_trait]
impl UserDirectory for AccessModel {
    async fn find_by_login(&self, identifier: &str) -> Result<Option<UserId>, StoreError> {
        let key = identifier.trim().to_lowercase();
        let state = self.state.read().map_err(|_| StoreError::Unavailable("access model lock poisoned".into()))?;
        // An exact email match wins over a username that happens to look like it.
        Ok(state.emails.get(&key).or_else(|| state.usernames.get(&key)).copied())
    }
}

/// An event the model is built from, decoded.
enum Read {
    User(UserEvent),
    Session(SessionEvent),
}

impl State {
    fn apply(&mut self, event: &DecodedEvent, read: Read) {
        let e = match read {
            Read::User(e) => e,
            Read::Session(e) => return self.apply_session(e),
        };
        let user_id = match &e {
            UserEvent::UserRegistered { user_id, .. }
            | UserEvent::ProfileUpdated { user_id, .. }
            | UserEvent::RolesChanged { user_id, .. }
            | UserEvent::AccountActivationChanged { user_id, .. }
            | UserEvent::PasswordChanged { user_id, .. }
            | UserEvent::PasswordResetRequested { user_id, .. }
            | UserEvent::PasswordResetCompleted { user_id, .. }
            | UserEvent::UserLoggedIn { user_id, .. } => *user_id,
        };
        if let UserEvent::UserRegistered { personal, .. } = &e
            && !event.erased
        {
            self.emails.insert(personal.email.to_lowercase(), user_id);
            if let Some(username) = &personal.username {
                self.usernames.insert(username.to_lowercase(), user_id);
            }
        }
        let (user, version) = self.users.entry(user_id).or_default();
        user.apply(&e);
        *version = event.recorded.version;
    }

    fn apply_session(&mut self, e: SessionEvent) {
        match e {
            SessionEvent::SessionStarted { session_id, user_id, expires_at, credentials_version, cookie_hash, .. } => {
                if let Some(hash) = &cookie_hash {
                    self.cookies.insert(hash.clone(), session_id);
                }
                self.sessions.insert(session_id, OpenSession { user_id, credentials_version, expires_at, cookie_hash });
            }
            SessionEvent::RefreshTokenRotated { session_id, expires_at, .. } => {
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    s.expires_at = expires_at;
                }
            }
            SessionEvent::RefreshTokenReissued { .. } | SessionEvent::RefreshTokenReuseDetected { .. } => {}
            SessionEvent::SessionEnded { session_id, .. } => self.forget(session_id),
        }
    }

    fn forget(&mut self, session_id: Uuid) {
        if let Some(hash) = self.sessions.remove(&session_id).and_then(|s| s.cookie_hash) {
            self.cookies.remove(&hash);
        }
    }

    /// Drops expired sessions once their number has doubled since the last sweep, so
    /// that memory follows the sessions open now, not every login ever.
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.sessions.len() < 1_024 || self.sessions.len() < 2 * self.swept_at {
            return;
        }
        let expired: Vec<Uuid> = self.sessions.iter().filter(|(_, s)| s.expires_at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.forget(id);
        }
        self.swept_at = self.sessions.len();
    }

    fn judge(&self, session_id: Uuid, claimed_user: Option<UserId>, now: DateTime<Utc>) -> Result<Caller, Denied> {
        let session = self.sessions.get(&session_id).ok_or(Denied::SessionEnded)?;
        if claimed_user.is_some_and(|u| u != session.user_id) || session.expires_at <= now {
            return Err(Denied::SessionEnded);
        }
        let (user, _) = self.users.get(&session.user_id).ok_or(Denied::SessionEnded)?;
        if user.credentials_version() != session.credentials_version {
            // The password changed since this session began.
            return Err(Denied::SessionEnded);
        }
        if !user.is_active() {
            return Err(Denied::Inactive);
        }
        Ok(Caller { user_id: session.user_id, roles: user.roles().clone(), session_id })
    }
}
