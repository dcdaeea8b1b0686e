/// Identity's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error("a user with this username already exists")]
    UsernameTaken,
    /// A token (or the session behind it) that does not hold any more.
    #[error("the token is invalid or expired")]
    TokenInvalid,
    #[error("the user is inactive")]
    UserInactive,
    /// A password change whose old password does not match.
    #[error("the old password does not match")]
    OldPasswordWrong,
    /// Nobody changes their own roles or activation, not even an admin.
    #[error("one's own roles and activation are for another admin to change")]
    OwnRolesOrActivation,
}
