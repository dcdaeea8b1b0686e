//! The `users` read model: profiles, roles, last login; and the login directory.

use async_trait::async_trait;
use medledger_application::codec::DecodedEvent;
use medledger_application::ports::{StoreError, UserDirectory};
use medledger_domain::EventTypes;
use medledger_domain::identity::user::{UserEvent, UserId};
use sqlx::{AnyConnection, AnyPool};

use crate::{Projection, ProjectionError, timestamp};

pub struct UsersProjection;

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        super::USERS
    }

    fn handles(&self) -> EventTypes {
        EventTypes::of::<UserEvent>()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(&self, tx: &mut AnyConnection, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let Some(e) = event.to_domain::<UserEvent>()? else { return Ok(()) };
        match e {
            UserEvent::UserRegistered { user_id, roles, personal, registered_at, .. } => {
                let role_list: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                sqlx::query(
                    "INSERT INTO users (id, email, username, first_name, last_name, clinic_name, roles, primary_role, \
                     is_active, date_joined, last_login, erased) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, NULL, $10) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(user_id)
                .bind(personal.email)
                .bind(personal.username)
                .bind(personal.first_name)
                .bind(personal.last_name)
                .bind(personal.clinic_name)
                .bind(serde_json::json!(role_list).to_string())
                .bind(roles.primary().as_str())
                .bind(timestamp(registered_at))
                .bind(event.erased as i64)
                .execute(&mut *tx)
                .await?;
            }
            UserEvent::ProfileUpdated { user_id, personal } => {
                sqlx::query(
                    "UPDATE users SET first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name), \
                     clinic_name = COALESCE($4, clinic_name) WHERE id = $1",
                )
                .bind(user_id)
                .bind(personal.first_name)
                .bind(personal.last_name)
                .bind(personal.clinic_name)
                .execute(&mut *tx)
                .await?;
            }
            UserEvent::RolesChanged { user_id, roles } => {
                let role_list: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                sqlx::query("UPDATE users SET roles = $2, primary_role = $3 WHERE id = $1")
                    .bind(user_id)
                    .bind(serde_json::json!(role_list).to_string())
                    .bind(roles.primary().as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            UserEvent::AccountActivationChanged { user_id, active } => {
                sqlx::query("UPDATE users SET is_active = $2 WHERE id = $1").bind(user_id).bind(active as i64).execute(&mut *tx).await?;
            }
            UserEvent::UserLoggedIn { user_id, at } => {
                sqlx::query("UPDATE users SET last_login = $2 WHERE id = $1").bind(user_id).bind(timestamp(at)).execute(&mut *tx).await?;
            }
            UserEvent::PasswordChanged { .. } | UserEvent::PasswordResetRequested { .. } | UserEvent::PasswordResetCompleted { .. } => {}
        }
        Ok(())
    }
}

/// Login identifier → user id, from the `users` read model. Emails are stored
/// lower-cased; usernames match case-insensitively.
pub struct SqlUserDirectory {
    read: AnyPool,
}

impl SqlUserDirectory {
    pub fn new(read: AnyPool) -> Self {
        Self { read }
    }
}

#[async_trait]
impl UserDirectory for SqlUserDirectory {
    async fn find_by_login(&self, identifier: &str) -> Result<Option<UserId>, StoreError> {
        let identifier = identifier.trim();
        if identifier.is_empty() {
            return Ok(None);
        }
        // An exact email match wins over a username that happens to look like it.
        sqlx::query_scalar(
            "SELECT id FROM users WHERE email = $1 OR LOWER(username) = $1 \
             ORDER BY CASE WHEN email = $1 THEN 0 ELSE 1 END, id LIMIT 1",
        )
        .bind(identifier.to_lowercase())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}
