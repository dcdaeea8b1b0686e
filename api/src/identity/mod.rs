//! Identity over HTTP: every contract's login (000/003/004 tokens, 001's cookie session
//! with CSRF), and 002's accounts, users, audit log and health.

mod accounts;
mod logins;

use std::sync::Arc;

use medledger_application::identity::ResetMailSaga;
use medledger_application::ports::{Mailer, SystemClock};
use medledger_infrastructure::crypto::SecretKey;
use medledger_infrastructure::mail::{OutboxMailer, SmtpMailer};
use medledger_projections::identity::AccessProjection;

pub use logins::session_cookie;

use crate::error::ShapeKind;
use crate::module::{Module, Wiring};
use crate::openapi::Api;

pub const MODULE: Module = Module {
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
    ..Module::named("identity")
};

fn routes(api: Api) -> Api {
    accounts::routes(logins::routes(api))
}

fn sagas(w: &Wiring) -> anyhow::Result<Vec<Arc<dyn medledger_application::sagas::Saga>>> {
    let mailer: Arc<dyn Mailer> = match &w.config.smtp_url {
        Some(url) => Arc::new(SmtpMailer::from_url(url.expose(), &w.config.mail_from)?),
        None => Arc::new(OutboxMailer::new(w.config.outbox_dir(), w.config.mail_from.clone())),
    };
    let reset_key = SecretKey::derive(&w.core.secret, "password-reset").as_bytes().to_vec();
    Ok(vec![Arc::new(ResetMailSaga::new(mailer, w.config.reset_link_base.clone(), reset_key, Arc::new(SystemClock)))])
}
