use std::sync::Arc;

use async_trait::async_trait;
use medledger_domain::EventTypes;
use medledger_domain::identity::user::{UserEvent, UserEventKind};

use crate::AppError;
use crate::codec::DecodedEvent;
use crate::ports::{Clock, Mail, Mailer};
use crate::sagas::Saga;

/// Sends the password-reset mail for each `PasswordResetRequested`. The message id is
/// the event id, so a redelivery after a crash does not send a second mail.
pub struct ResetMailSaga {
    mailer: Arc<dyn Mailer>,
    /// Where the reset link points (the frontend's confirm page).
    link_base: String,
    /// The key that turns the stored nonce into the mailed token.
    reset_key: Vec<u8>,
    clock: Arc<dyn Clock>,
}

impl ResetMailSaga {
    pub fn new(mailer: Arc<dyn Mailer>, link_base: impl Into<String>, reset_key: Vec<u8>, clock: Arc<dyn Clock>) -> Self {
        Self { mailer, link_base: link_base.into(), reset_key, clock }
    }
}

#[async_trait]
impl Saga for ResetMailSaga {
    fn name(&self) -> &'static str {
        "reset_mail"
    }

    fn handles(&self) -> EventTypes {
        EventTypes::only([UserEventKind::PasswordResetRequested])
    }

    async fn handle(&self, event: &DecodedEvent) -> Result<(), AppError> {
        if event.erased {
            return Ok(());
        }
        let Some(UserEvent::PasswordResetRequested { user_id, nonce, personal, expires_at, .. }) = event.to_domain::<UserEvent>()? else {
            return Ok(());
        };
        if expires_at <= self.clock.now() {
            // Replayed long after the request (a restored checkpoint): the link is dead.
            return Ok(());
        }
        let token = crate::identity::accounts::reset_token(&self.reset_key, user_id, &nonce);
        let mail = Mail {
            message_id: event.recorded.event_id.to_string(),
            to: personal.email,
            subject: "Reset your medledger password".into(),
            body: format!(
                "Someone asked to reset the password of this account.\n\n\
                 Token: {token}\nLink: {base}?token={token}\n\n\
                 POST it with a new password to /api/auth/password-reset/confirm/ before {expires_at}.\n\
                 If it was not you, ignore this mail.\n",
                token = token,
                base = self.link_base,
            ),
        };
        Ok(self.mailer.send(&mail).await?)
    }
}
