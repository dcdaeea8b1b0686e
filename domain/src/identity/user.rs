//! The one `User` aggregate behind all five contracts (API-MAP.md §2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::role::{Role, Roles};
use crate::values::{BoundedText, Email, PasswordHash, Username};
use crate::{Aggregate, DomainError, DomainEvent, EventNames, Upcaster};

pub type UserId = i64;

pub const NAME_MAX: usize = 30;
pub const CLINIC_MAX: usize = 100;

pub fn stream_id(id: UserId) -> String {
    format!("user-{id}")
}

/// Who the person is. Encrypted under the user's own key in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPersonal {
    #[serde(default = "crate::erased")]
    pub email: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub clinic_name: String,
}

/// Profile fields a user (or an admin) may change. Encrypted like [`UserPersonal`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProfilePersonal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinic_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    UserRegistered {
        user_id: UserId,
        roles: Roles,
        password_hash: PasswordHash,
        personal: UserPersonal,
        registered_at: DateTime<Utc>,
    },
    ProfileUpdated {
        user_id: UserId,
        personal: ProfilePersonal,
    },
    RolesChanged {
        user_id: UserId,
        roles: Roles,
    },
    AccountActivationChanged {
        user_id: UserId,
        active: bool,
    },
    PasswordChanged {
        user_id: UserId,
        password_hash: PasswordHash,
    },
    PasswordResetRequested {
        user_id: UserId,
        /// The mailed token is a keyed MAC of this nonce under a server key: the history
        /// holds neither the token nor anything it can be computed from without that key.
        nonce: String,
        /// SHA-256 of the token, to check it when it comes back.
        token_hash: String,
        expires_at: DateTime<Utc>,
        personal: ResetMail,
    },
    PasswordResetCompleted {
        user_id: UserId,
        token_hash: String,
        password_hash: PasswordHash,
    },
    UserLoggedIn {
        user_id: UserId,
        at: DateTime<Utc>,
    },
}

/// Where the reset mail goes. Encrypted under the user's key, so shredding the user
/// also shreds pending mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetMail {
    #[serde(default = "crate::erased")]
    pub email: String,
}

impl DomainEvent for UserEvent {
    const UPCASTERS: &'static [Upcaster] = &[Upcaster { event_type: "UserRegistered", from_version: 1, upcast: user_registered_v1_to_v2 }];

    fn schema_version(&self) -> u32 {
        match self {
            // v1 stored one `full_name`; v2 splits it (`user_registered_v1_to_v2`).
            UserEvent::UserRegistered { .. } => 2,
            _ => 1,
        }
    }

    fn personal_subject(&self) -> Option<String> {
        match self {
            UserEvent::UserRegistered { user_id, .. }
            | UserEvent::ProfileUpdated { user_id, .. }
            | UserEvent::PasswordResetRequested { user_id, .. } => Some(stream_id(*user_id)),
            _ => None,
        }
    }
}

/// `UserRegistered` v1 kept one `full_name`; v2 has `first_name` and `last_name` (the
/// first word, and the rest).
fn user_registered_v1_to_v2(mut data: serde_json::Value) -> serde_json::Value {
    if let Some(personal) = data.get_mut("personal").and_then(serde_json::Value::as_object_mut)
        && let Some(full) = personal.remove("full_name")
    {
        let full = full.as_str().unwrap_or_default().trim().to_string();
        let (first, last) = full.split_once(' ').unwrap_or((&full, ""));
        personal.insert("first_name".into(), serde_json::json!(first));
        personal.insert("last_name".into(), serde_json::json!(last.trim()));
    }
    data
}

#[derive(Debug)]
pub enum UserCommand {
    Register {
        user_id: UserId,
        email: Email,
        username: Option<Username>,
        password_hash: PasswordHash,
        first_name: BoundedText,
        last_name: BoundedText,
        clinic_name: BoundedText,
        roles: Roles,
        now: DateTime<Utc>,
    },
    UpdateProfile {
        first_name: Option<BoundedText>,
        last_name: Option<BoundedText>,
        clinic_name: Option<BoundedText>,
    },
    ChangeRoles {
        roles: Roles,
    },
    SetActive {
        active: bool,
    },
    /// The caller has already verified the old password against [`User::password_hash`].
    ChangePassword {
        password_hash: PasswordHash,
    },
    RequestPasswordReset {
        nonce: String,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    CompletePasswordReset {
        token_hash: String,
        password_hash: PasswordHash,
        now: DateTime<Utc>,
    },
    RecordLogin {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct PendingReset {
    token_hash: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone)]
pub struct User {
    id: Option<UserId>,
    email: String,
    roles: Roles,
    active: bool,
    password_hash: Option<PasswordHash>,
    pending_resets: Vec<PendingReset>,
    credentials_version: u64,
}

impl User {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn id(&self) -> Option<UserId> {
        self.id
    }

    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn password_hash(&self) -> Option<&PasswordHash> {
        self.password_hash.as_ref()
    }

    /// Bumped by every password change or reset; sessions started under an older
    /// version are dead.
    pub fn credentials_version(&self) -> u64 {
        self.credentials_version
    }

    /// When the newest pending reset link expires (none: no reset pending).
    pub fn latest_reset_expiry(&self) -> Option<DateTime<Utc>> {
        self.pending_resets.iter().map(|r| r.expires_at).max()
    }

    fn require(&self) -> Result<UserId, DomainError> {
        self.id.ok_or(DomainError::NotFound("user"))
    }
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    const CATEGORY: &'static str = "user";

    fn handle(&self, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
        match command {
            UserCommand::Register { user_id, email, username, password_hash, first_name, last_name, clinic_name, roles, now } => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists("user"));
                }
                if roles.is_empty() {
                    return Err(DomainError::invalid("role", "a user needs at least one role"));
                }
                Ok(vec![UserEvent::UserRegistered {
                    user_id,
                    roles,
                    password_hash,
                    personal: UserPersonal {
                        email: email.as_str().to_string(),
                        username: username.map(|u| u.as_str().to_string()),
                        first_name: first_name.as_str().to_string(),
                        last_name: last_name.as_str().to_string(),
                        clinic_name: clinic_name.as_str().to_string(),
                    },
                    registered_at: now,
                }])
            }
            UserCommand::UpdateProfile { first_name, last_name, clinic_name } => {
                let user_id = self.require()?;
                let personal = ProfilePersonal {
                    first_name: first_name.map(|v| v.as_str().to_string()),
                    last_name: last_name.map(|v| v.as_str().to_string()),
                    clinic_name: clinic_name.map(|v| v.as_str().to_string()),
                };
                if personal == ProfilePersonal::default() {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::ProfileUpdated { user_id, personal }])
            }
            UserCommand::ChangeRoles { roles } => {
                let user_id = self.require()?;
                if roles.is_empty() {
                    return Err(DomainError::invalid("role", "a user needs at least one role"));
                }
                if roles == self.roles {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::RolesChanged { user_id, roles }])
            }
            UserCommand::SetActive { active } => {
                let user_id = self.require()?;
                if active == self.active {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::AccountActivationChanged { user_id, active }])
            }
            UserCommand::ChangePassword { password_hash } => {
                let user_id = self.require()?;
                if !self.active {
                    return Err(DomainError::AccountInactive);
                }
                Ok(vec![UserEvent::PasswordChanged { user_id, password_hash }])
            }
            UserCommand::RequestPasswordReset { nonce, token_hash, expires_at } => {
                let user_id = self.require()?;
                if !self.active {
                    return Err(DomainError::AccountInactive);
                }
                Ok(vec![UserEvent::PasswordResetRequested {
                    user_id,
                    nonce,
                    token_hash,
                    expires_at,
                    personal: ResetMail { email: self.email.clone() },
                }])
            }
            UserCommand::CompletePasswordReset { token_hash, password_hash, now } => {
                let user_id = self.require()?;
                let valid = self.pending_resets.iter().any(|r| r.token_hash == token_hash && r.expires_at > now);
                if !valid || !self.active {
                    return Err(DomainError::InvalidResetToken);
                }
                Ok(vec![UserEvent::PasswordResetCompleted { user_id, token_hash, password_hash }])
            }
            UserCommand::RecordLogin { now } => {
                let user_id = self.require()?;
                if !self.active {
                    return Err(DomainError::AccountInactive);
                }
                Ok(vec![UserEvent::UserLoggedIn { user_id, at: now }])
            }
        }
    }

    fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserRegistered { user_id, roles, password_hash, personal, .. } => {
                self.id = Some(*user_id);
                self.email = personal.email.clone();
                self.roles = roles.clone();
                self.active = true;
                self.password_hash = Some(password_hash.clone());
            }
            UserEvent::ProfileUpdated { .. } | UserEvent::UserLoggedIn { .. } => {}
            UserEvent::RolesChanged { roles, .. } => self.roles = roles.clone(),
            UserEvent::AccountActivationChanged { active, .. } => self.active = *active,
            UserEvent::PasswordChanged { password_hash, .. } => {
                self.password_hash = Some(password_hash.clone());
                self.credentials_version += 1;
                // A new password voids every reset link mailed before it.
                self.pending_resets.clear();
            }
            UserEvent::PasswordResetRequested { token_hash, expires_at, .. } => {
                self.pending_resets.push(PendingReset { token_hash: token_hash.clone(), expires_at: *expires_at });
            }
            UserEvent::PasswordResetCompleted { password_hash, .. } => {
                self.password_hash = Some(password_hash.clone());
                self.credentials_version += 1;
                self.pending_resets.clear();
            }
        }
    }
}

/// Claims on a unique login identifier (email or username). The stream id is
/// `email-<sha256>` / `username-<sha256>`; appending with "no stream" makes the
/// claim atomic with the registration that carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum ClaimEvent {
    LoginIdentifierClaimed { user_id: UserId, kind: IdentifierKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Username,
}

impl DomainEvent for ClaimEvent {}

/// Roles a self-registered (002) account gets.
pub fn self_registration_roles() -> Roles {
    Roles::new([Role::Doctor])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Given, given};
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn register() -> UserCommand {
        UserCommand::Register {
            user_id: 7,
            email: Email::parse("Ann@Example.org").unwrap(),
            username: Some(Username::parse("ann").unwrap()),
            password_hash: PasswordHash::new("$argon2id$x".into()),
            first_name: BoundedText::parse("Ann", "firstName", NAME_MAX).unwrap(),
            last_name: BoundedText::parse("Lee", "lastName", NAME_MAX).unwrap(),
            clinic_name: BoundedText::default(),
            roles: self_registration_roles(),
            now: now(),
        }
    }

    fn registered() -> Given<User> {
        given::<User>([]).when(register()).and()
    }

    #[test]
    fn registration_emits_normalised_personal_data() {
        let history = registered();
        let events = history.history();
        let [UserEvent::UserRegistered { user_id, personal, roles, .. }] = events else { panic!("{events:?}") };
        assert_eq!(*user_id, 7);
        assert_eq!(personal.email, "ann@example.org");
        assert!(roles.contains(Role::Doctor));
        assert_eq!(events[0].personal_subject().as_deref(), Some("user-7"));
    }

    #[test]
    fn registering_twice_is_refused() {
        registered().when(register()).then_refused(DomainError::AlreadyExists("user"));
    }

    #[test]
    fn commands_on_a_missing_user_are_not_found() {
        given::<User>([]).when(UserCommand::RecordLogin { now: now() }).then_refused(DomainError::NotFound("user"));
    }

    #[test]
    fn empty_profile_update_emits_nothing() {
        let cmd = UserCommand::UpdateProfile { first_name: None, last_name: None, clinic_name: None };
        registered().when(cmd).then_nothing();
    }

    #[test]
    fn reset_token_works_once_and_only_before_expiry() {
        let complete =
            |at| UserCommand::CompletePasswordReset { token_hash: "h".into(), password_hash: PasswordHash::new("new".into()), now: at };
        registered()
            .when(UserCommand::RequestPasswordReset { nonce: "n".into(), token_hash: "h".into(), expires_at: now() + Duration::hours(1) })
            .and()
            .when(complete(now() + Duration::hours(2)))
            .then_refused(DomainError::InvalidResetToken)
            .when(complete(now()))
            .and()
            .when(complete(now()))
            .then_refused(DomainError::InvalidResetToken);
    }

    #[test]
    fn wrong_reset_token_is_refused() {
        let cmd =
            UserCommand::CompletePasswordReset { token_hash: "nope".into(), password_hash: PasswordHash::new("new".into()), now: now() };
        registered().when(cmd).then_refused(DomainError::InvalidResetToken);
    }

    #[test]
    fn inactive_accounts_cannot_log_in_or_change_password() {
        let cmd = UserCommand::ChangePassword { password_hash: PasswordHash::new("x".into()) };
        registered()
            .when(UserCommand::SetActive { active: false })
            .then([UserEvent::AccountActivationChanged { user_id: 7, active: false }])
            .when(UserCommand::RecordLogin { now: now() })
            .then_refused(DomainError::AccountInactive)
            .when(cmd)
            .then_refused(DomainError::AccountInactive);
    }

    #[test]
    fn changing_roles_to_the_same_set_is_a_no_op_and_empty_is_refused() {
        let same = UserCommand::ChangeRoles { roles: self_registration_roles() };
        registered().when(same).then_nothing();
        let empty = UserCommand::ChangeRoles { roles: Roles::default() };
        assert!(registered().when(empty).result().is_err());
    }

    #[test]
    fn events_serialise_adjacently_tagged() {
        let json = serde_json::to_value(&registered().history()[0]).unwrap();
        assert_eq!(json["type"], "UserRegistered");
        assert_eq!(json["data"]["personal"]["email"], "ann@example.org");
    }
}
