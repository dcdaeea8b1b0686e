use std::sync::Arc;

use async_trait::async_trait;
use medledger_domain::user::UserEvent;

use super::Saga;
use crate::AppError;
use crate::codec::DecodedEvent;
use crate::ports::{Mail, Mailer};

/// Sends the password-reset mail for each `PasswordResetRequested`. The message id is
/// the event id, so a redelivery after a crash does not send a second mail.
pub struct ResetMailSaga {
    mailer: Arc<dyn Mailer>,
    /// Where the reset link points (the frontend's confirm page).
    link_base: String,
}

impl ResetMailSaga {
    pub fn new(mailer: Arc<dyn Mailer>, link_base: impl Into<String>) -> Self {
        Self { mailer, link_base: link_base.into() }
    }
}

#[async_trait]
impl Saga for ResetMailSaga {
    fn name(&self) -> &'static str {
        "reset_mail"
    }

    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError> {
        if event.event_type() != "PasswordResetRequested" || event.erased {
            return Ok(());
        }
        let Some(UserEvent::PasswordResetRequested { personal, expires_at, .. }) = event.to_domain::<UserEvent>() else {
            return Ok(());
        };
        let mail = Mail {
            message_id: event.recorded.event_id.to_string(),
            to: personal.email,
            subject: "Reset your medledger password".into(),
            body: format!(
                "Someone asked to reset the password of this account.\n\n\
                 Token: {token}\nLink: {base}?token={token}\n\n\
                 POST it with a new password to /api/auth/password-reset/confirm/ before {expires_at}.\n\
                 If it was not you, ignore this mail.\n",
                token = personal.token,
                base = self.link_base,
            ),
        };
        self.mailer.send(&mail).await.map_err(AppError::Internal)
    }
}
