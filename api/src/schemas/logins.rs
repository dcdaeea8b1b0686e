//! What the logins of 000, 003, 004 and 001 answer (`identity/logins.rs`).

use schemars::JsonSchema;
use serde::Serialize;

/// 000's and 004's login: `token_type` is `bearer` (000) or `Bearer` (004), as each
/// seed writes it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BearerToken {
    pub access_token: String,
    pub token_type: &'static str,
}

/// 004's OAuth2 password form (FastAPI's `OAuth2PasswordRequestForm`).
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the fields `logins::inference_login` reads
pub struct PasswordForm {
    /// `password` when given.
    #[schemars(regex(pattern = r"^password$"))]
    grant_type: Option<String>,
    username: String,
    password: String,
    /// Accepted and ignored.
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// 003's login: the token and the one role the labeling platform knows the user by.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LabelingToken {
    pub access_token: String,
    #[schemars(with = "LabelingRole")]
    pub role: &'static str,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // describes the words `Roles::labeling_role` answers
enum LabelingRole {
    Admin,
    Universal,
    Labeler,
    Customer,
}

/// `GET /login/`: the CSRF token, also set as the `csrftoken` cookie.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CsrfToken {
    pub csrftoken: String,
    pub login: &'static str,
}

/// `POST /login/`: the session cookie is set; the body says who logged in.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionLogin {
    pub success: bool,
    pub user: SessionUser,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionUser {
    pub id: i64,
    pub roles: Vec<&'static str>,
}

/// `POST /logout/` (and other 001 answers with nothing more to say).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Success {
    pub success: bool,
}
