//! A login session: one family of rotating refresh tokens.
//!
//! Each refresh rotates the token; presenting any token but the current one is reuse
//! (a stolen token was used) and ends the whole family, with one exception: the token
//! rotated out last, presented again within a short grace window after its rotation,
//! gets the same answer as the first time (the current token, issued again). A client
//! that lost the answer to its refresh, or that sent two at once (two tabs, a retry),
//! keeps its session; a token stolen and replayed after the window still ends it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::user::UserId;
use crate::{Aggregate, DomainError, DomainEvent, EventNames};

pub fn stream_id(session_id: Uuid) -> String {
    format!("session-{session_id}")
}

/// `MEDLEDGER_REFRESH_GRACE_SECS` unless configured: long enough for concurrent
/// refreshes and a retry after a lost answer, short enough that a stolen token is of
/// use only in the seconds after its owner used it (Okta allows 0–60 s, Cognito 0–60 s).
pub const DEFAULT_REFRESH_GRACE_SECS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Logout,
    TokenReuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
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
        /// When the rotation was decided: the token it replaced may be presented again
        /// until the grace window after it has passed. Rotations recorded before this
        /// field existed have none, and give no grace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotated_at: Option<DateTime<Utc>>,
    },
    /// The token rotated out last came back within the grace window: the current token
    /// (`token_id`, unchanged) was handed out again. Nothing about the session changes.
    RefreshTokenReissued {
        session_id: Uuid,
        user_id: UserId,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
        /// The just-rotated token that was presented.
        presented: Uuid,
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

impl DomainEvent for SessionEvent {}

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
    /// Exchange `presented` for `new_token_id` (or, within `grace` of the rotation that
    /// replaced `presented`, for the current token again).
    Rotate {
        presented: Uuid,
        new_token_id: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        grace: Duration,
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
    /// The token the last rotation replaced, and when that rotation happened.
    previous: Option<(Uuid, DateTime<Utc>)>,
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

    /// Whether `presented` is the token rotated out last and its rotation is less than
    /// `grace` ago. Only that one token: an older one is reuse however recent (one step
    /// back covers a lost answer or a concurrent refresh; more steps would only help a
    /// thief). A clock behind the rotation's counts as within the window.
    fn within_grace(&self, presented: Uuid, now: DateTime<Utc>, grace: Duration) -> bool {
        grace > Duration::zero() && self.previous.is_some_and(|(token, at)| token == presented && now - at < grace)
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
            SessionCommand::Rotate { presented, new_token_id, expires_at, now, grace } => {
                let session_id = self.id.ok_or(DomainError::NotFound("session"))?;
                let user_id = self.user_id;
                if self.ended {
                    return Err(DomainError::SessionEnded);
                }
                let (Some(current), Some(current_expiry)) = (self.current, self.expires_at) else {
                    return Err(DomainError::NotFound("session"));
                };
                let replay = current != presented && self.within_grace(presented, now, grace);
                if current != presented && !replay {
                    // Reuse of a rotated token: revoke the family. The caller answers 401
                    // but must still record these events.
                    return Ok(self.reuse(session_id, presented));
                }
                if current_expiry <= now {
                    return Err(DomainError::SessionEnded);
                }
                if replay {
                    // The same answer as the rotation gave: the current token, expiring
                    // when it does. The window is not moved: it runs from the rotation.
                    return Ok(vec![SessionEvent::RefreshTokenReissued {
                        session_id,
                        user_id,
                        token_id: current,
                        expires_at: current_expiry,
                        presented,
                    }]);
                }
                Ok(vec![SessionEvent::RefreshTokenRotated {
                    session_id,
                    user_id,
                    token_id: new_token_id,
                    expires_at,
                    rotated_at: Some(now),
                }])
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
            SessionEvent::RefreshTokenRotated { token_id, expires_at, rotated_at, .. } => {
                self.previous = self.current.zip(*rotated_at);
                self.current = Some(*token_id);
                self.expires_at = Some(*expires_at);
            }
            SessionEvent::RefreshTokenReissued { .. } | SessionEvent::RefreshTokenReuseDetected { .. } => {}
            SessionEvent::SessionEnded { .. } => self.ended = true,
        }
    }
}

/// Is this a rotation outcome that the caller must refuse?
pub fn is_reuse(events: &[SessionEvent]) -> bool {
    events.iter().any(|e| matches!(e, SessionEvent::RefreshTokenReuseDetected { .. }))
}

/// The refresh token a rotation's outcome hands out, and its expiry: the new token, or
/// the current one again within the grace window. None for a refused rotation.
pub fn handed_out(events: &[SessionEvent]) -> Option<(Uuid, DateTime<Utc>)> {
    events.iter().find_map(|e| match e {
        SessionEvent::RefreshTokenRotated { token_id, expires_at, .. }
        | SessionEvent::RefreshTokenReissued { token_id, expires_at, .. } => Some((*token_id, *expires_at)),
        _ => None,
    })
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

    /// Rotations in these tests give no grace unless they say so.
    fn rotate(presented: Uuid, new: Uuid) -> SessionCommand {
        rotate_at(presented, new, t0(), Duration::zero())
    }

    fn rotate_at(presented: Uuid, new: Uuid, now: DateTime<Utc>, grace: Duration) -> SessionCommand {
        SessionCommand::Rotate { presented, new_token_id: new, expires_at: now + Duration::days(7), now, grace }
    }

    fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    /// Given a session started with `a` and rotated to `b` at t0 (grace in force).
    fn rotated_once(a: Uuid, b: Uuid) -> Vec<SessionEvent> {
        let mut history = started(a);
        history.extend(Session::from_events(&history).handle(rotate_at(a, b, t0(), secs(10))).unwrap());
        history
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
            grace: secs(10),
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
    #[test]
    fn the_just_rotated_token_within_the_grace_window_gets_the_current_token_again() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let mut history = rotated_once(a, b);
        // When the client presents `a` again two seconds after the rotation...
        let out = Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(12), t0() + secs(2), secs(10))).unwrap();
        // ...then it gets `b` again, with `b`'s expiry, and nothing is revoked.
        assert_eq!(handed_out(&out), Some((b, t0() + Duration::days(7))));
        assert!(matches!(out.as_slice(), [SessionEvent::RefreshTokenReissued { presented, .. }] if *presented == a));
        assert!(!is_reuse(&out));
        history.extend(out);
        let state = Session::from_events(&history);
        assert!(state.is_live());
        // And a second retry inside the window gets the same answer.
        let again = state.handle(rotate_at(a, Uuid::from_u128(13), t0() + secs(9), secs(10))).unwrap();
        assert_eq!(handed_out(&again), Some((b, t0() + Duration::days(7))));
        // The current token still rotates normally.
        let next = state.handle(rotate_at(b, Uuid::from_u128(14), t0() + secs(3), secs(10))).unwrap();
        assert!(matches!(next.as_slice(), [SessionEvent::RefreshTokenRotated { token_id, .. }] if *token_id == Uuid::from_u128(14)));
    }

    #[test]
    fn the_just_rotated_token_after_the_grace_window_revokes_the_session() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let mut history = rotated_once(a, b);
        // The window is half-open: at exactly ten seconds it has closed.
        let out = Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(12), t0() + secs(10), secs(10))).unwrap();
        assert!(is_reuse(&out));
        assert!(matches!(out.last(), Some(SessionEvent::SessionEnded { reason: EndReason::TokenReuse, .. })));
        history.extend(out);
        assert!(!Session::from_events(&history).is_live());
    }

    #[test]
    fn a_reissue_does_not_move_the_window() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let mut history = rotated_once(a, b);
        history.extend(Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(12), t0() + secs(8), secs(10))).unwrap());
        let out = Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(13), t0() + secs(12), secs(10))).unwrap();
        assert!(is_reuse(&out), "the window runs from the rotation, not from the last reissue");
    }

    #[test]
    fn only_the_token_rotated_out_last_has_grace() {
        let (a, b, c) = (Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12));
        let mut history = rotated_once(a, b);
        history.extend(Session::from_events(&history).handle(rotate_at(b, c, t0() + secs(1), secs(10))).unwrap());
        // `a` is two rotations back: reuse, even one second later.
        let out = Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(13), t0() + secs(2), secs(10))).unwrap();
        assert!(is_reuse(&out));
    }

    #[test]
    fn no_grace_when_it_is_off_or_the_session_is_over() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let history = rotated_once(a, b);
        let off = Session::from_events(&history).handle(rotate_at(a, Uuid::from_u128(12), t0(), Duration::zero())).unwrap();
        assert!(is_reuse(&off), "a zero window turns the grace off");
        let mut ended = history.clone();
        ended.extend(Session::from_events(&ended).handle(SessionCommand::End { presented: b }).unwrap());
        let late = Session::from_events(&ended).handle(rotate_at(a, Uuid::from_u128(12), t0() + secs(1), secs(10)));
        assert_eq!(late, Err(DomainError::SessionEnded), "a logged-out session is not revived by the grace window");
    }

    #[test]
    fn rotations_recorded_before_the_grace_window_replay_and_give_no_grace() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        // A RefreshTokenRotated as stored before `rotated_at` existed.
        let old: SessionEvent = serde_json::from_value(serde_json::json!({
            "type": "RefreshTokenRotated",
            "data": {"session_id": Uuid::from_u128(1), "user_id": 3, "token_id": b, "expires_at": t0() + Duration::days(7)}
        }))
        .unwrap();
        assert!(matches!(&old, SessionEvent::RefreshTokenRotated { rotated_at: None, .. }));
        let mut history = started(a);
        history.push(old);
        let state = Session::from_events(&history);
        assert!(state.is_live());
        let out = state.handle(rotate_at(a, Uuid::from_u128(12), t0() + secs(1), secs(10))).unwrap();
        assert!(is_reuse(&out), "without the rotation's time there is no window to be inside");
        // New rotations serialise the field; old payloads stay byte-for-byte what they were.
        let new = &rotated_once(a, b)[1];
        assert!(serde_json::to_value(new).unwrap()["data"]["rotated_at"].is_string());
    }
}
