//! Identity use cases shared by every contract: registration, login, sessions,
//! profile, passwords, and admin user management.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use hmac::{Hmac, Mac};
use medledger_domain::identity::role::Roles;
use medledger_domain::identity::session::{self, Session, SessionCommand};
use medledger_domain::identity::user::{self, ClaimEvent, IdentifierKind, User, UserCommand, UserEvent, UserId};
use medledger_domain::values::{BoundedText, Email, NewPassword, PasswordHash, PasswordPolicy, Username};
use medledger_domain::{Aggregate, DomainError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppError;
use crate::identity::AccountError;
use crate::identity::access::{AccessModel, Caller, Denied, cookie_hash};
use crate::ledger::Ledger;
use crate::metadata::CommandContext;
use crate::ports::{
    AccessClaims, Clock, ExpectedVersion, IdGenerator, PasswordHasher, Position, RefreshClaims, StoreError, TokenError, TokenService,
    UserDirectory,
};

/// The profile fields as errors name them: the `Registration` and `ProfileChange` field
/// names. Each contract spells a field its own way (the api's error mapping).
pub const FIRST_NAME: &str = "first_name";
pub const LAST_NAME: &str = "last_name";
pub const CLINIC_NAME: &str = "clinic_name";
/// Where a form's error that is about no one field goes.
pub const WHOLE_FORM: &str = "form";

pub const RESET_TOKEN_TTL_HOURS: i64 = 1;
/// At most one reset mail per account in this many seconds.
pub const RESET_MAIL_INTERVAL_SECS: i64 = 60;
/// Password-reset requests being recorded at once, beyond which more are dropped.
const RESET_WRITES: usize = 16;

/// A registration form in the domain's words; strings are parsed here.
#[derive(Debug, Default, Clone)]
pub struct Registration {
    pub email: String,
    pub username: Option<String>,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub clinic_name: String,
    pub roles: Roles,
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub roles: Roles,
    pub tokens: Tokens,
    pub position: Position,
}

/// Which profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub clinic_name: Option<String>,
    pub roles: Option<Roles>,
    pub active: Option<bool>,
}

/// Server-held keys the account use cases need. Derived from the server secret.
#[derive(Clone)]
pub struct AccountKeys {
    /// Keys the hash in login-identifier claim streams, so that the history does not
    /// hold a dictionary-reversible hash of every email address.
    pub identifiers: Vec<u8>,
    /// Turns a reset nonce (stored) into the reset token (mailed, never stored).
    pub reset: Vec<u8>,
    /// Authenticates the login position a browser session's cookie carries.
    pub cookies: Vec<u8>,
}

fn mac(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

/// The token mailed for a reset request: `USER_ID.MAC(nonce)`.
pub fn reset_token(key: &[u8], user_id: UserId, nonce: &str) -> String {
    format!("{user_id}.{}", mac(key, &[b"password-reset", user_id.to_string().as_bytes(), nonce.as_bytes()]))
}

/// How often a login is re-recorded when a concurrent change to the user wins the race.
const LOGIN_RETRIES: usize = 3;

#[derive(Clone)]
pub struct Accounts {
    keys: AccountKeys,
    ledger: Ledger,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenService>,
    ids: Arc<dyn IdGenerator>,
    directory: Arc<dyn UserDirectory>,
    clock: Arc<dyn Clock>,
    /// Users and sessions as the history says now (fed by the server's runner; empty
    /// in the CLI, where every read falls back to the store).
    access: Arc<AccessModel>,
    password_policy: PasswordPolicy,
    /// How long after a rotation the token it replaced still gets an answer (the
    /// current token again) instead of revoking the session.
    refresh_grace: chrono::Duration,
    reset_writes: Arc<tokio::sync::Semaphore>,
}

fn identifier_stream(key: &[u8], kind: IdentifierKind, value: &str) -> String {
    let prefix = match kind {
        IdentifierKind::Email => "email",
        IdentifierKind::Username => "username",
    };
    format!("{prefix}-{}", mac(key, &[prefix.as_bytes(), value.to_lowercase().as_bytes()]))
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Collects per-field errors so that a form reports all of them at once.
#[derive(Default)]
struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    fn take<T>(&mut self, r: Result<T, DomainError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(DomainError::InvalidValue { field, message }) => {
                self.0.entry(field.to_string()).or_default().push(message);
                None
            }
            Err(other) => {
                self.0.entry(WHOLE_FORM.into()).or_default().push(other.to_string());
                None
            }
        }
    }

    fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() { Ok(()) } else { Err(DomainError::InvalidFields(self.0).into()) }
    }
}

impl Accounts {
    pub fn new(
        keys: AccountKeys,
        ledger: Ledger,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenService>,
        ids: Arc<dyn IdGenerator>,
        directory: Arc<dyn UserDirectory>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            ledger,
            hasher,
            tokens,
            ids,
            directory,
            clock,
            access: AccessModel::new(),
            password_policy: PasswordPolicy::default(),
            refresh_grace: chrono::Duration::seconds(session::DEFAULT_REFRESH_GRACE_SECS.into()),
            reset_writes: Arc::new(tokio::sync::Semaphore::new(RESET_WRITES)),
        }
    }

    /// The refresh grace window (zero: any second use of a rotated token revokes).
    pub fn with_refresh_grace(mut self, grace: std::time::Duration) -> Self {
        self.refresh_grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// What new passwords must satisfy (the default: at least 12 characters).
    pub fn with_password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.password_policy = policy;
        self
    }

    /// The in-memory view of users and sessions that judges requests and serves logins.
    pub fn with_access(mut self, access: Arc<AccessModel>) -> Self {
        self.access = access;
        self
    }

    pub fn access(&self) -> &Arc<AccessModel> {
        &self.access
    }

    /// A user and its stream version: from the access model when it knows the user
    /// (a map lookup, however long the user's history), else from the store.
    async fn user_now(&self, user_id: UserId, fresh: bool) -> Result<(User, i64), AppError> {
        match self.access.user(user_id) {
            Some(known) if !fresh => Ok(known),
            _ => self.ledger.load::<User>(&user::stream_id(user_id)).await,
        }
    }

    pub fn tokens(&self) -> &Arc<dyn TokenService> {
        &self.tokens
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn hash_password(&self, password: NewPassword) -> Result<PasswordHash, AppError> {
        let hasher = self.hasher.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.hash(password.expose())).await??)
    }

    async fn verify_password(&self, password: &str, hash: Option<PasswordHash>) -> bool {
        let hasher = self.hasher.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || match hash {
            Some(hash) => hasher.verify(&password, &hash),
            None => {
                // Spend the same time as a real check so that timing does not reveal
                // which accounts exist.
                let _ = hasher.hash(&password);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Registers a user and logs them in, without checking the password they just chose
    /// a second time.
    pub async fn register_and_login(&self, form: Registration, ctx: &CommandContext) -> Result<LoggedIn, AppError> {
        let (user_id, _) = self.register(form, ctx).await?;
        let (user, version) = self.ledger.load::<User>(&user::stream_id(user_id)).await?;
        self.start_session(&user, version, ctx, None).await
    }

    /// Registers a user; the email (and username) claims are appended atomically with
    /// the registration, so two concurrent sign-ups with one email cannot both win.
    pub async fn register(&self, form: Registration, ctx: &CommandContext) -> Result<(UserId, Position), AppError> {
        let mut errors = FieldErrors::default();
        let email = errors.take(Email::parse(&form.email));
        let username = match form.username.as_deref() {
            Some(u) => errors.take(Username::parse(u)).map(Some),
            None => Some(None),
        };
        let password = errors.take(NewPassword::parse(&form.password, "password", &self.password_policy));
        let first_name = errors.take(BoundedText::parse(&form.first_name, FIRST_NAME, user::NAME_MAX));
        let last_name = errors.take(BoundedText::parse(&form.last_name, LAST_NAME, user::NAME_MAX));
        let clinic_name = errors.take(BoundedText::parse(&form.clinic_name, CLINIC_NAME, user::CLINIC_MAX));
        errors.finish()?;
        let (Some(email), Some(username), Some(password), Some(first_name), Some(last_name), Some(clinic_name)) =
            (email, username, password, first_name, last_name, clinic_name)
        else {
            return Err(AppError::broken("field errors were not reported"));
        };
        if self.directory.find_by_login(email.as_str()).await?.is_some() {
            return Err(email_taken());
        }
        let password_hash = self.hash_password(password).await?;
        let user_id = self.ids.next_id("user").await?;
        let registered = User::default().handle(UserCommand::Register {
            user_id,
            email: email.clone(),
            username: username.clone(),
            password_hash,
            first_name,
            last_name,
            clinic_name,
            roles: form.roles,
            now: self.clock.now(),
        })?;
        // The new user is the actor of its own registration: its key seals the
        // request's address and user agent.
        let ctx = &ctx.clone().with_actor(user_id);
        let claim = |kind| [ClaimEvent::LoginIdentifierClaimed { user_id, kind }];
        let email_stream = identifier_stream(&self.keys.identifiers, IdentifierKind::Email, email.as_str());
        let mut parts = vec![self.ledger.prepare(&email_stream, ExpectedVersion::NoStream, &claim(IdentifierKind::Email), ctx).await?];
        if let Some(u) = &username {
            let stream = identifier_stream(&self.keys.identifiers, IdentifierKind::Username, u.as_str());
            parts.push(self.ledger.prepare(&stream, ExpectedVersion::NoStream, &claim(IdentifierKind::Username), ctx).await?);
        }
        parts.push(self.ledger.prepare(&user::stream_id(user_id), ExpectedVersion::NoStream, &registered, ctx).await?);
        match self.ledger.commit(parts).await {
            Ok(appended) => Ok((user_id, appended.last_position)),
            Err(AppError::Store(StoreError::Conflict { stream_id, .. })) if stream_id == email_stream => Err(email_taken()),
            Err(AppError::Store(StoreError::Conflict { .. })) => Err(AccountError::UsernameTaken.into()),
            Err(e) => Err(e),
        }
    }

    /// Checks credentials, records the login and starts a session.
    pub async fn login(&self, identifier: &str, password: &str, ctx: &CommandContext) -> Result<LoggedIn, AppError> {
        self.login_with(identifier, password, ctx, None).await
    }

    /// A browser login (001): the session is also reached by an opaque cookie, whose
    /// hash the history records. Returns the cookie with the login.
    pub async fn login_browser(&self, identifier: &str, password: &str, ctx: &CommandContext) -> Result<(LoggedIn, String), AppError> {
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let done = self.login_with(identifier, password, ctx, Some(cookie_hash(&secret))).await?;
        let position = done.position.to_string();
        let cookie = format!("{secret}-{position}-{}", self.cookie_mac(&secret, &position));
        Ok((done, cookie))
    }

    /// The MAC that makes a cookie's position trustworthy: a position a client wrote
    /// itself would make the server wait for history that never comes.
    fn cookie_mac(&self, secret: &str, position: &str) -> String {
        let full = mac(&self.keys.cookies, &[b"session-cookie", secret.as_bytes(), position.as_bytes()]);
        full.get(..32).map_or_else(|| full.clone(), str::to_string)
    }

    /// Judges a browser session's cookie, `{secret}-{position}-{mac}`: the session it
    /// names, as the history holds it now, once this process has read the login.
    pub async fn judge_browser(&self, cookie: &str) -> Result<Caller, Denied> {
        let mut parts = cookie.splitn(3, '-');
        let (Some(secret), Some(position), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Denied::SessionEnded);
        };
        let expected = self.cookie_mac(secret, position);
        let same = tag.len() == expected.len() && tag.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let position: Position = position.parse().map_err(|_| Denied::SessionEnded)?;
        if !same {
            return Err(Denied::SessionEnded);
        }
        self.access.judge_cookie(secret, position).await
    }

    async fn login_with(
        &self,
        identifier: &str,
        password: &str,
        ctx: &CommandContext,
        cookie_hash: Option<String>,
    ) -> Result<LoggedIn, AppError> {
        let mut attempt = 0;
        loop {
            match self.try_login(identifier, password, ctx, attempt > 0, cookie_hash.clone()).await {
                // A concurrent change to the user (another login): the credentials were
                // right, so record this login on top of it.
                Err(AppError::Store(StoreError::Conflict { .. })) if attempt < LOGIN_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// `fresh`: read the user from the store (a retry after the access model's
    /// version of the user lost a race).
    async fn try_login(
        &self,
        identifier: &str,
        password: &str,
        ctx: &CommandContext,
        fresh: bool,
        cookie_hash: Option<String>,
    ) -> Result<LoggedIn, AppError> {
        let user_id = self.directory.find_by_login(identifier.trim()).await?;
        // Known or not, a failed login costs one directory lookup and one password
        // check: the user comes from memory, not from a replay of its whole stream.
        let (user, version) = match user_id {
            Some(id) => self.user_now(id, fresh).await?,
            None => (User::default(), 0),
        };
        let ok = self.verify_password(password, user.password_hash().cloned()).await;
        if !(ok && user.is_active()) {
            return Err(AppError::InvalidCredentials);
        }
        self.start_session(&user, version, ctx, cookie_hash).await
    }

    /// Records a login of a user whose credentials were just checked (or who was just
    /// registered) and issues the session's tokens.
    async fn start_session(
        &self,
        user: &User,
        version: i64,
        ctx: &CommandContext,
        cookie_hash: Option<String>,
    ) -> Result<LoggedIn, AppError> {
        let user_id = user.id().ok_or(AppError::InvalidCredentials)?;
        let ctx = ctx.clone().with_actor(user_id);
        let now = self.clock.now();
        let logged_in = user.handle(UserCommand::RecordLogin { now })?;
        let session_id = Uuid::new_v4();
        let token_id = Uuid::new_v4();
        let expires_at = now + self.tokens.refresh_ttl();
        let started = Session::default().handle(SessionCommand::Start {
            session_id,
            user_id,
            token_id,
            expires_at,
            credentials_version: user.credentials_version(),
            cookie_hash,
        })?;
        let parts = vec![
            self.ledger.prepare(&user::stream_id(user_id), ExpectedVersion::Exact(version), &logged_in, &ctx).await?,
            self.ledger.prepare(&session::stream_id(session_id), ExpectedVersion::NoStream, &started, &ctx).await?,
        ];
        let appended = self.ledger.commit(parts).await?;
        let roles = user.roles().clone();
        let access = self.issue_access(user_id, &roles, session_id, appended.last_position)?;
        let refresh = self.tokens.issue_refresh(&RefreshClaims { user_id, session_id, token_id }, expires_at)?;
        Ok(LoggedIn { user_id, session_id, roles, tokens: Tokens { access, refresh }, position: appended.last_position })
    }

    fn issue_access(&self, user_id: UserId, roles: &Roles, session_id: Uuid, position: Position) -> Result<String, AppError> {
        Ok(self.tokens.issue_access(&AccessClaims { user_id, roles: roles.clone(), session_id, position })?)
    }

    fn refresh_claims(&self, token: &str) -> Result<RefreshClaims, AppError> {
        self.tokens.verify_refresh(token).map_err(|_: TokenError| token_invalid())
    }

    /// Rotates a refresh token. Presenting an already-rotated token revokes the session
    /// and is recorded (the reuse shows in the audit log).
    pub async fn refresh(&self, refresh_token: &str, ctx: &CommandContext) -> Result<Tokens, AppError> {
        let claims = self.refresh_claims(refresh_token)?;
        // Checked before anything is written: a refused refresh records nothing.
        let (user, _) = self.user_now(claims.user_id, false).await?;
        if !user.is_active() {
            return Err(AccountError::UserInactive.into());
        }
        let ctx = ctx.clone().with_actor(claims.user_id);
        let new_token_id = Uuid::new_v4();
        let now = self.clock.now();
        let expires_at = now + self.tokens.refresh_ttl();
        let grace = self.refresh_grace;
        let (events, position) = self
            .ledger
            .execute::<Session>(&session::stream_id(claims.session_id), &ctx, |s| {
                if s.is_live() && s.credentials_version() != user.credentials_version() {
                    // The password changed since this session began.
                    return Err(DomainError::SessionEnded);
                }
                s.handle(SessionCommand::Rotate { presented: claims.token_id, new_token_id, expires_at, now, grace })
            })
            .await
            .map_err(session_error)?;
        if session::is_reuse(&events) {
            return Err(self.reuse_recorded(position).await);
        }
        // A new token, or within the grace window the current one again (reissued).
        let (token_id, expires_at) = session::handed_out(&events).ok_or_else(|| AppError::broken("a refresh recorded nothing"))?;
        let position = position.ok_or_else(|| AppError::broken("a refresh recorded nothing"))?;
        let access = self.issue_access(claims.user_id, user.roles(), claims.session_id, position)?;
        let refresh = self.tokens.issue_refresh(&RefreshClaims { token_id, ..claims }, expires_at)?;
        Ok(Tokens { access, refresh })
    }

    /// A reused refresh token has revoked its session at `position`. Requests are judged
    /// by the access model, so it must have applied that before the caller hears so, or
    /// the session's access token would still pass here for a moment. (Past the model's
    /// bounded wait the answer goes out anyway: the token is refused as soon as it has.)
    async fn reuse_recorded(&self, position: Option<Position>) -> AppError {
        if let Some(position) = position {
            let _ = self.access.reach(position).await;
        }
        AppError::TokenReuse
    }

    /// Ends the session the refresh token belongs to; the position of the end, if it
    /// was not already over.
    pub async fn logout(&self, refresh_token: &str, caller: UserId, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let claims = self.refresh_claims(refresh_token)?;
        if claims.user_id != caller {
            return Err(token_invalid());
        }
        let (events, position) = self
            .ledger
            .execute::<Session>(&session::stream_id(claims.session_id), &ctx.clone().with_actor(caller), |s| {
                s.handle(SessionCommand::End { presented: claims.token_id })
            })
            .await
            .map_err(session_error)?;
        if session::is_reuse(&events) {
            return Err(self.reuse_recorded(position).await);
        }
        Ok(position)
    }

    /// Ends a browser session (001 logout); the caller proved it holds the session with
    /// its cookie.
    pub async fn close_session(&self, session_id: Uuid, caller: UserId, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let (_, position) = self
            .ledger
            .execute::<Session>(&session::stream_id(session_id), &ctx.clone().with_actor(caller), |s| {
                if s.user_id() != caller {
                    return Err(DomainError::SessionEnded);
                }
                s.handle(SessionCommand::Close)
            })
            .await
            .map_err(session_error)?;
        Ok(position)
    }

    pub async fn change_password(
        &self,
        user_id: UserId,
        old_password: &str,
        new_password: &str,
        ctx: &CommandContext,
    ) -> Result<Position, AppError> {
        let new_password = NewPassword::parse(new_password, "new_password", &self.password_policy)?;
        let (user, _) = self.ledger.load::<User>(&user::stream_id(user_id)).await?;
        if !self.verify_password(old_password, user.password_hash().cloned()).await {
            return Err(AccountError::OldPasswordWrong.into());
        }
        let password_hash = self.hash_password(new_password).await?;
        let ctx = ctx.clone().with_actor(user_id);
        let (_, position) = self
            .ledger
            .execute::<User>(&user::stream_id(user_id), &ctx, |u| {
                u.handle(UserCommand::ChangePassword { password_hash: password_hash.clone() })
            })
            .await?;
        position.ok_or_else(|| AppError::broken("password change wrote nothing"))
    }

    /// Starts a password reset. Unknown addresses succeed silently so that the endpoint
    /// does not reveal who has an account. The mail is sent by the reset-mail saga.
    ///
    /// The request is recorded after the answer, off the request: a real account's write
    /// would otherwise make its answer measurably slower than an unknown address's (the
    /// review measured 3x), which tells an attacker who has an account.
    pub async fn request_password_reset(&self, email: &str, ctx: &CommandContext) -> Result<(), AppError> {
        let email = Email::parse(email)?;
        let Some(user_id) = self.directory.find_by_login(email.as_str()).await? else {
            return Ok(());
        };
        // One mail a minute per account: a flood of requests must not mail-bomb its owner.
        let recent = self.clock.now() + Duration::hours(RESET_TOKEN_TTL_HOURS) - Duration::seconds(RESET_MAIL_INTERVAL_SECS);
        if self.access.user(user_id).and_then(|(u, _)| u.latest_reset_expiry()).is_some_and(|e| e > recent) {
            return Ok(());
        }
        // Bounded: past the limit a request is dropped (and logged) rather than queued, so
        // a flood neither piles up work nor changes how fast the answer comes.
        let Ok(permit) = self.reset_writes.clone().try_acquire_owned() else {
            tracing::warn!(user_id, "too many password reset requests being recorded; this one is dropped");
            return Ok(());
        };
        let me = self.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = me.record_password_reset(user_id, &ctx).await {
                tracing::error!(user_id, error = %e, "could not record a password reset request");
            }
            drop(permit);
        });
        Ok(())
    }

    async fn record_password_reset(&self, user_id: UserId, ctx: &CommandContext) -> Result<(), AppError> {
        let nonce = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let token_hash = hash_token(&reset_token(&self.keys.reset, user_id, &nonce));
        let expires_at = self.clock.now() + Duration::hours(RESET_TOKEN_TTL_HOURS);
        let result = self
            .ledger
            .execute::<User>(&user::stream_id(user_id), ctx, |u| {
                u.handle(UserCommand::RequestPasswordReset { nonce: nonce.clone(), token_hash: token_hash.clone(), expires_at })
            })
            .await;
        match result {
            Ok(_) | Err(AppError::Domain(DomainError::AccountInactive)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the new password; returns the position of the change (every earlier session
    /// ends there).
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
        ctx: &CommandContext,
    ) -> Result<Option<Position>, AppError> {
        let new_password = NewPassword::parse(new_password, "new_password", &self.password_policy)?;
        let user_id: UserId = token.split_once('.').and_then(|(id, _)| id.parse().ok()).ok_or(DomainError::InvalidResetToken)?;
        let token_hash = hash_token(token);
        let password_hash = self.hash_password(new_password).await?;
        let now = self.clock.now();
        let (_, position) = self
            .ledger
            .execute::<User>(&user::stream_id(user_id), &ctx.clone().with_actor(user_id), |u| {
                if !u.exists() {
                    return Err(DomainError::InvalidResetToken);
                }
                u.handle(UserCommand::CompletePasswordReset { token_hash: token_hash.clone(), password_hash: password_hash.clone(), now })
            })
            .await?;
        Ok(position)
    }

    /// Applies a profile change. Roles and activation are for admins only: the API
    /// checks that before it builds a change with them. Nobody changes their own roles
    /// or activation (the actor is `ctx`'s), not even an admin: a demoted admin's last
    /// request must not be able to undo the demotion.
    pub async fn update_user(&self, user_id: UserId, change: ProfileChange, ctx: &CommandContext) -> Result<Option<Position>, AppError> {
        let own = ctx.metadata.actor_user_id == Some(user_id);
        // Set when the refusal below is the reason: the domain's error cannot say so.
        let refused_own = std::sync::atomic::AtomicBool::new(false);
        let mut errors = FieldErrors::default();
        let mut parse = |v: Option<String>, field, max| match v {
            Some(v) => errors.take(BoundedText::parse(&v, field, max)).map(Some),
            None => Some(None),
        };
        let first_name = parse(change.first_name, FIRST_NAME, user::NAME_MAX);
        let last_name = parse(change.last_name, LAST_NAME, user::NAME_MAX);
        let clinic_name = parse(change.clinic_name, CLINIC_NAME, user::CLINIC_MAX);
        errors.finish()?;
        let (first_name, last_name, clinic_name) = (first_name.flatten(), last_name.flatten(), clinic_name.flatten());
        let (_, position) = self
            .ledger
            .execute::<User>(&user::stream_id(user_id), ctx, |u| {
                let mut events: Vec<UserEvent> = u.handle(UserCommand::UpdateProfile {
                    first_name: first_name.clone(),
                    last_name: last_name.clone(),
                    clinic_name: clinic_name.clone(),
                })?;
                let changes_roles = change.roles.as_ref().is_some_and(|r| r != u.roles());
                let changes_activation = change.active.is_some_and(|a| a != u.is_active());
                if own && (changes_roles || changes_activation) {
                    refused_own.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(DomainError::Forbidden("one's own roles and activation"));
                }
                if let Some(roles) = &change.roles {
                    events.extend(u.handle(UserCommand::ChangeRoles { roles: roles.clone() })?);
                }
                if let Some(active) = change.active {
                    events.extend(u.handle(UserCommand::SetActive { active })?);
                }
                Ok(events)
            })
            .await
            .map_err(
                |e| if refused_own.load(std::sync::atomic::Ordering::Relaxed) { AccountError::OwnRolesOrActivation.into() } else { e },
            )?;
        Ok(position)
    }
}

fn email_taken() -> AppError {
    AccountError::EmailTaken.into()
}

fn token_invalid() -> AppError {
    AccountError::TokenInvalid.into()
}

fn session_error(e: AppError) -> AppError {
    match e {
        AppError::Domain(DomainError::SessionEnded | DomainError::NotFound(_)) => token_invalid(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_streams_ignore_case_and_hide_the_address() {
        let a = identifier_stream(b"k1", IdentifierKind::Email, "Ann@Example.org");
        assert_eq!(a, identifier_stream(b"k1", IdentifierKind::Email, "ann@example.org"));
        assert!(a.starts_with("email-") && !a.contains("example"));
        let unkeyed = hex::encode(Sha256::digest(b"ann@example.org"));
        assert!(!a.contains(&unkeyed), "a plain hash could be reversed with a dictionary");
        assert_ne!(a, identifier_stream(b"k2", IdentifierKind::Email, "ann@example.org"));
    }

    #[test]
    fn reset_tokens_depend_on_the_key_user_and_nonce() {
        let t = reset_token(b"k", 7, "n");
        assert!(t.starts_with("7."));
        assert_ne!(t, reset_token(b"other", 7, "n"));
        assert_ne!(t, reset_token(b"k", 8, "n"));
        assert_ne!(t, reset_token(b"k", 7, "m"));
    }
}
