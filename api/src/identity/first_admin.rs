//! The first admin, from `MEDLEDGER_ADMIN_EMAIL` / `MEDLEDGER_ADMIN_PASSWORD`.

use medledger_application::AppError;
use medledger_application::identity::AccountError;
use medledger_application::identity::accounts::Registration;
use medledger_application::metadata::CommandContext;
use medledger_application::ports::UserDirectory as _;
use medledger_domain::identity::role::{Role, Roles};
use medledger_projections::identity::SqlUserDirectory;

use crate::error::{ApiError, Detail};
use crate::state::AppState;

/// The first admin from `MEDLEDGER_ADMIN_EMAIL` / `MEDLEDGER_ADMIN_PASSWORD`, once.
pub(super) async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&state.config.contexts.identity.admin_email, &state.config.contexts.identity.admin_password)
    else {
        return Ok(());
    };
    // Already there from an earlier start. Set up, perhaps, before passwords needed 12
    // characters: it keeps the password it has (only new passwords are held to the policy).
    if admin_exists(state, email).await {
        let policy = medledger_domain::values::PasswordPolicy::with_min_chars(state.config.contexts.identity.min_password_length);
        if medledger_domain::values::NewPassword::parse(password.expose(), "password", &policy).is_err() {
            tracing::warn!("MEDLEDGER_ADMIN_PASSWORD does not meet the password policy; the admin exists already and is left as it is");
        }
        return Ok(());
    }
    let form = Registration {
        email: email.clone(),
        password: password.expose().to_string(),
        roles: Roles::new([Role::Admin]),
        ..Default::default()
    };
    match state.accounts.register(form, &CommandContext::system()).await {
        Ok((id, position)) => {
            tracing::info!(user_id = id, "created the first admin from MEDLEDGER_ADMIN_EMAIL");
            state.caught_up(position).await;
            Ok(())
        }
        // Created by a server that started at the same time.
        Err(AppError::Account(AccountError::EmailTaken)) => Ok(()),
        Err(e @ AppError::Domain(_)) => {
            let why = ApiError::<Detail>::from(e).detail;
            Err(anyhow::anyhow!("cannot create the admin from MEDLEDGER_ADMIN_EMAIL / MEDLEDGER_ADMIN_PASSWORD: {why}"))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot create the admin from MEDLEDGER_ADMIN_EMAIL")),
    }
}

async fn admin_exists(state: &AppState, email: &str) -> bool {
    SqlUserDirectory::new(state.dbs.read.clone()).find_by_login(email).await.is_ok_and(|found| found.is_some())
}
