//! Identity over HTTP: every contract's login (000/003/004 tokens, 001's cookie session
//! with CSRF), and 002's accounts, users, audit log and health.

mod accounts;
mod first_admin;
mod logins;
mod settings;

use std::sync::Arc;

use medledger_application::identity::ResetMailSaga;
use medledger_application::identity::access::AccessModel;
use medledger_application::identity::accounts::{AccountKeys, Accounts};
use medledger_application::ledger::Ledger;
use medledger_application::ports::{IdGenerator, Mailer, PasswordHasher, SystemClock, UserDirectory};
use medledger_domain::values::PasswordPolicy;
use medledger_infrastructure::crypto::SecretKey;
use medledger_infrastructure::jwt::JwtService;
use medledger_infrastructure::mail::{OutboxMailer, SmtpMailer};
use medledger_infrastructure::password::Argon2Hasher;
use medledger_projections::identity::AccessProjection;

pub use logins::session_cookie;

use crate::config::Config;
use crate::error::ShapeKind;
use crate::module::{Module, Sagas, Wiring};
use crate::openapi::Api;

pub use settings::Settings;

pub const MODULE: Module = Module {
    events: medledger_domain::identity::EVENTS,
    paths: &[
        ("/api/auth", ShapeKind::Myo),
        ("/api/users", ShapeKind::Myo),
        ("/api/audit-logs", ShapeKind::Myo),
        ("/api/health", ShapeKind::Myo),
        // 002's analytics: answered in its contract's shape until it is served (issue 20).
        ("/api/analytics", ShapeKind::Myo),
        ("/login", ShapeKind::Django),
        ("/logout", ShapeKind::Django),
        ("/register", ShapeKind::Django),
    ],
    routes,
    read_models: |_| medledger_projections::identity::read_models(),
    indexes: |w| vec![Arc::new(AccessProjection(w.core.accounts.access().clone()))],
    sagas,
    start: |state| Box::pin(first_admin::bootstrap_admin(state)),
    ..Module::named("identity")
};

fn routes(api: Api) -> Api {
    accounts::routes(logins::routes(api))
}

fn sagas(w: &Wiring) -> Sagas {
    let mailer: Arc<dyn Mailer> = match &w.config.smtp_url {
        Some(url) => Arc::new(SmtpMailer::from_url(url.expose(), &w.config.mail_from)?),
        None => Arc::new(OutboxMailer::new(w.config.outbox_dir(), w.config.mail_from.clone())),
    };
    let reset_key = SecretKey::derive(&w.core.secret, "password-reset").as_bytes().to_vec();
    Ok(vec![Arc::new(ResetMailSaga::new(mailer, w.config.contexts.identity.reset_link_base.clone(), reset_key, Arc::new(SystemClock)))])
}

/// The accounts use case: built with the shared core (requests are judged by its access
/// model before any context's handler runs).
pub fn accounts(config: &Config, secret: &[u8], ledger: &Ledger, ids: &Arc<dyn IdGenerator>) -> Accounts {
    let hasher: Arc<dyn PasswordHasher> = if config.contexts.identity.fast_password_hash {
        Arc::new(Argon2Hasher::fast_for_tests())
    } else {
        Arc::new(Argon2Hasher::recommended())
    };
    let jwt_key = SecretKey::derive(secret, "jwt-hs256");
    let tokens = Arc::new(JwtService::new(jwt_key.as_bytes(), config.contexts.identity.access_ttl, config.contexts.identity.refresh_ttl));
    // Logins are found in the access model (memory); the CLI, which does not feed it,
    // finds none, and relies on the claim streams for uniqueness.
    let access = AccessModel::new();
    let directory: Arc<dyn UserDirectory> = access.clone();
    let keys = AccountKeys {
        identifiers: SecretKey::derive(secret, "login-identifiers").as_bytes().to_vec(),
        reset: SecretKey::derive(secret, "password-reset").as_bytes().to_vec(),
        cookies: SecretKey::derive(secret, "session-cookie").as_bytes().to_vec(),
    };
    Accounts::new(keys, ledger.clone(), hasher, tokens, ids.clone(), directory, Arc::new(SystemClock))
        .with_access(access)
        .with_password_policy(PasswordPolicy::with_min_chars(config.contexts.identity.min_password_length))
        .with_refresh_grace(config.contexts.identity.refresh_grace)
}
