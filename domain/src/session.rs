//! A login session: one family of rotating refresh tokens.
//!
//! Each refresh rotates the token; presenting any token but the current one is reuse
//! (a stolen token was used) and ends the whole family.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::user::UserId;
use crate::{Aggregate, DomainError, DomainEvent};

pub fn stream_id(session_id: Uuid) -> String {
    format!("session-{session_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Logout,
    TokenReuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SessionEvent {
    SessionStarted {
        session_id: Uuid,
        user_id: UserId,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
        /// The user's credentials version at login: a later password change ends it.
        #[serde(default)]
        credentials_version: u64,
        /// SHA-256 of the opaque cookie a browser session (001) carries instead of a
        /// token; none for token clients. The cookie itself is never recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie_hash: Option<String>,
    },
    RefreshTokenRotated {
        session_id: Uuid,
        user_id: UserId,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
    },
    RefreshTokenReuseDetected {
        session_id: Uuid,
        user_id: UserId,
        token_id: Uuid,
    },
    SessionEnded {
        session_id: Uuid,
        user_id: UserId,
        reason: EndReason,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::RefreshTokenRotated { .. } => "RefreshTokenRotated",
            SessionEvent::RefreshTokenReuseDetected { .. } => "RefreshTokenReuseDetected",
            SessionEvent::SessionEnded { .. } => "SessionEnded",
        }
    }
}

#[derive(Debug)]
pub enum SessionCommand {
    Start {
        session_id: Uuid,
        user_id: UserId,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
        credentials_version: u64,
        cookie_hash: Option<String>,
    },
    /// Exchange `presented` for `new_token_id`.
    Rotate {
        presented: Uuid,
        new_token_id: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    End {
        presented: Uuid,
    },
    /// Ends the session for a caller who proved they hold it another way than by its
    /// refresh token (a browser's session cookie).
    Close,
}

#[derive(Debug, Default)]
pub struct Session {
    id: Option<Uuid>,
    user_id: UserId,
    current: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    ended: bool,
    credentials_version: u64,
}

impl Session {
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.ended
    }

    pub fn credentials_version(&self) -> u64 {
        self.credentials_version
    }

    fn reuse(&self, session_id: Uuid, presented: Uuid) -> Vec<SessionEvent> {
        let user_id = self.user_id;
        vec![
            SessionEvent::RefreshTokenReuseDetected { session_id, user_id, token_id: presented },
            SessionEvent::SessionEnded { session_id, user_id, reason: EndReason::TokenReuse },
        ]
    }
}

impl Aggregate for Session {
    type Command = SessionCommand;
    type Event = SessionEvent;
    const CATEGORY: &'static str = "session";

    fn handle(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, DomainError> {
        match command {
            SessionCommand::Start { session_id, user_id, token_id, expires_at, credentials_version, cookie_hash } => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists("session"));
                }
                Ok(vec![SessionEvent::SessionStarted { session_id, user_id, token_id, expires_at, credentials_version, cookie_hash }])
            }
            SessionCommand::Rotate { presented, new_token_id, expires_at, now } => {
                let session_id = self.id.ok_or(DomainError::NotFound("session"))?;
                let user_id = self.user_id;
                if self.ended {
                    return Err(DomainError::SessionEnded);
                }
                if self.current != Some(presented) {
                    // Reuse of a rotated token: revoke the family. The caller answers 401
                    // but must still record these events.
                    return Ok(self.reuse(session_id, presented));
                }
                if self.expires_at.is_some_and(|e| e <= now) {
                    return Err(DomainError::SessionEnded);
                }
                Ok(vec![SessionEvent::RefreshTokenRotated { session_id, user_id, token_id: new_token_id, expires_at }])
            }
            SessionCommand::End { presented } => {
                let session_id = self.id.ok_or(DomainError::NotFound("session"))?;
                if self.ended {
                    return Ok(vec![]);
                }
                let user_id = self.user_id;
                if self.current != Some(presented) {
                    return Ok(self.reuse(session_id, presented));
                }
                Ok(vec![SessionEvent::SessionEnded { session_id, user_id, reason: EndReason::Logout }])
            }
            SessionCommand::Close => {
                let session_id = self.id.ok_or(DomainError::NotFound("session"))?;
                if self.ended {
                    return Ok(vec![]);
                }
                Ok(vec![SessionEvent::SessionEnded { session_id, user_id: self.user_id, reason: EndReason::Logout }])
            }
        }
    }

    fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::SessionStarted { session_id, user_id, token_id, expires_at, credentials_version, .. } => {
                self.id = Some(*session_id);
                self.user_id = *user_id;
                self.current = Some(*token_id);
                self.expires_at = Some(*expires_at);
                self.credentials_version = *credentials_version;
            }
            SessionEvent::RefreshTokenRotated { token_id, expires_at, .. } => {
                self.current = Some(*token_id);
                self.expires_at = Some(*expires_at);
            }
            SessionEvent::RefreshTokenReuseDetected { .. } => {}
            SessionEvent::SessionEnded { .. } => self.ended = true,
        }
    }
}

/// Is this a rotation outcome that the caller must refuse?
pub fn is_reuse(events: &[SessionEvent]) -> bool {
    events.iter().any(|e| matches!(e, SessionEvent::RefreshTokenReuseDetected { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn started(token: Uuid) -> Vec<SessionEvent> {
        Session::default()
            .handle(SessionCommand::Start {
                session_id: Uuid::from_u128(1),
                user_id: 3,
                token_id: token,
                expires_at: t0() + Duration::days(7),
                credentials_version: 0,
                cookie_hash: None,
            })
            .unwrap()
    }

    fn rotate(presented: Uuid, new: Uuid) -> SessionCommand {
        SessionCommand::Rotate { presented, new_token_id: new, expires_at: t0() + Duration::days(14), now: t0() }
    }

    #[test]
    fn rotation_replaces_the_current_token() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let mut history = started(a);
        let out = Session::from_events(&history).handle(rotate(a, b)).unwrap();
        assert!(matches!(out.as_slice(), [SessionEvent::RefreshTokenRotated { token_id, .. }] if *token_id == b));
        history.extend(out);
        // The old token is now reuse: the family is revoked.
        let out = Session::from_events(&history).handle(rotate(a, Uuid::from_u128(12))).unwrap();
        assert!(is_reuse(&out));
        history.extend(out);
        // ...including the token that was current.
        let state = Session::from_events(&history);
        assert!(!state.is_live());
        assert_eq!(state.handle(rotate(b, Uuid::from_u128(13))), Err(DomainError::SessionEnded));
    }

    #[test]
    fn expired_session_cannot_rotate() {
        let a = Uuid::from_u128(10);
        let late = SessionCommand::Rotate {
            presented: a,
            new_token_id: Uuid::from_u128(11),
            expires_at: t0() + Duration::days(30),
            now: t0() + Duration::days(8),
        };
        assert_eq!(Session::from_events(&started(a)).handle(late), Err(DomainError::SessionEnded));
    }

    #[test]
    fn logout_ends_the_session_once() {
        let a = Uuid::from_u128(10);
        let mut history = started(a);
        let out = Session::from_events(&history).handle(SessionCommand::End { presented: a }).unwrap();
        assert!(matches!(out.as_slice(), [SessionEvent::SessionEnded { reason: EndReason::Logout, .. }]));
        history.extend(out);
        assert_eq!(Session::from_events(&history).handle(SessionCommand::End { presented: a }), Ok(vec![]));
    }

    #[test]
    fn a_browser_logout_closes_the_session_once() {
        let mut history = started(Uuid::from_u128(10));
        let out = Session::from_events(&history).handle(SessionCommand::Close).unwrap();
        assert!(matches!(out.as_slice(), [SessionEvent::SessionEnded { reason: EndReason::Logout, .. }]));
        history.extend(out);
        assert!(!Session::from_events(&history).is_live());
        assert_eq!(Session::from_events(&history).handle(SessionCommand::Close), Ok(vec![]));
        assert_eq!(Session::default().handle(SessionCommand::Close), Err(DomainError::NotFound("session")));
    }
}
