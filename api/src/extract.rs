//! Extractors that fail in the contract's own error shape.

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use medledger_application::access::{Caller, Denied};
use medledger_application::metadata::{CommandContext, EventMetadata};
use medledger_application::ports::TokenError;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Django, Shape};
use crate::state::AppState;

async fn body_bytes<S: Shape>(req: Request, state: &AppState) -> Result<Bytes, ApiError<S>> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", "Request body is too large.")
        } else {
            ApiError::new(status, "invalid", format!("Could not read the request body: {rejection}"))
        }
    })?;
    Ok(bytes)
}

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Turns serde's message into a field error where it names a field.
fn parse_error<S: Shape>(e: &serde_json::Error) -> ApiError<S> {
    let message = e.to_string();
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return ApiError::field(field, "This field is required.");
    }
    if e.is_syntax() || e.is_eof() {
        return ApiError::bad_request(format!("JSON parse error - {message}"));
    }
    ApiError::bad_request(format!("Invalid request body - {message}"))
}

/// A JSON body: 415 for another content type, 413 when too large, 400 when malformed.
pub struct JsonBody<T, S>(pub T, pub PhantomData<S>);

impl<T: DeserializeOwned + Send, S: Shape> FromRequest<AppState> for JsonBody<T, S> {
    type Rejection = ApiError<S>;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = content_type(&req);
        if !(ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))) {
            let shown = if ct.is_empty() { "(none)".to_string() } else { ct };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Unsupported media type \"{shown}\" in request: send application/json."),
            ));
        }
        let bytes = body_bytes::<S>(req, state).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| parse_error::<S>(&e))?;
        Ok(Self(value, PhantomData))
    }
}

/// An `application/x-www-form-urlencoded` body (OAuth2 password form, Django forms).
pub struct FormBody<T, S>(pub T, pub PhantomData<S>);

impl<T: DeserializeOwned + Send, S: Shape> FromRequest<AppState> for FormBody<T, S> {
    type Rejection = ApiError<S>;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct = content_type(&req);
        if ct != "application/x-www-form-urlencoded" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the form as application/x-www-form-urlencoded.",
            ));
        }
        let bytes = body_bytes::<S>(req, state).await?;
        let value = serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::bad_request(format!("Invalid form: {e}")))?;
        Ok(Self(value, PhantomData))
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Why a request's credentials were not accepted. Each contract words it its own way;
/// `From<Refusal>` gives the 000/002 (DRF) wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Expired,
    /// Not a token of ours, or a session that has ended.
    Invalid,
    Inactive,
    /// This process has not read the history as far as the token was issued.
    Behind,
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Self {
        match d {
            Denied::SessionEnded => Refusal::Invalid,
            Denied::Inactive => Refusal::Inactive,
            Denied::Behind => Refusal::Behind,
        }
    }
}

impl<S: Shape> From<Refusal> for ApiError<S> {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Missing => ApiError::unauthorized("Authentication credentials were not provided."),
            Refusal::Expired => ApiError::new(StatusCode::UNAUTHORIZED, "token_not_valid", "Token is expired"),
            Refusal::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, "token_not_valid", "Given token not valid for any token type"),
            Refusal::Inactive => ApiError::new(StatusCode::UNAUTHORIZED, "user_inactive", "User is inactive"),
            Refusal::Behind => behind(),
        }
    }
}

fn behind<S: Shape>() -> ApiError<S> {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable").retry_after(1)
}

/// The caller behind a Bearer access token: the signature checked, then the session,
/// the account and its roles as the history holds them now (never the token's claims).
pub async fn bearer_caller(parts: &Parts, state: &AppState) -> Result<Caller, Refusal> {
    let token = bearer(parts).ok_or(Refusal::Missing)?;
    let claims = state.accounts.tokens().verify_access(token).map_err(|e| match e {
        TokenError::Expired => Refusal::Expired,
        TokenError::Invalid => Refusal::Invalid,
    })?;
    Ok(state.accounts.access().judge(&claims).await?)
}

/// An authenticated caller (Bearer access token), judged on their current state.
pub struct Auth<S>(pub Caller, pub PhantomData<S>);

impl<S> Auth<S> {
    pub fn user_id(&self) -> i64 {
        self.0.user_id
    }

    pub fn is_admin(&self) -> bool {
        self.0.is_admin()
    }
}

impl<S: Shape> FromRequestParts<AppState> for Auth<S> {
    type Rejection = ApiError<S>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer_caller(parts, state).await?, PhantomData))
    }
}

/// An authenticated admin, by the roles they hold now; anyone else gets 403.
pub struct Admin<S>(pub Caller, pub PhantomData<S>);

impl<S: Shape> FromRequestParts<AppState> for Admin<S> {
    type Rejection = ApiError<S>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Auth(caller, _) = Auth::<S>::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(ApiError::forbidden());
        }
        Ok(Self(caller, PhantomData))
    }
}

/// 001's caller: the browser session cookie (`sessionid`, opaque, bound to a session in
/// the history), or a Bearer token, which the contract also accepts. Judged like a
/// token on the session's and the account's current state.
pub struct BrowserUser(pub Caller);

impl FromRequestParts<AppState> for BrowserUser {
    type Rejection = ApiError<Django>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let refused = |r: Refusal| match r {
            Refusal::Behind => behind(),
            _ => ApiError::unauthorized("Authentication required"),
        };
        if bearer(parts).is_some() {
            return bearer_caller(parts, state).await.map(Self).map_err(refused);
        }
        let cookie = crate::routes::logins::session_cookie(&parts.headers, state).ok_or_else(|| refused(Refusal::Missing))?;
        state.accounts.access().judge_cookie(cookie).await.map(Self).map_err(|d| refused(d.into()))
    }
}

/// A client-chosen request id is kept only as far as it looks like one.
pub fn sanitize_request_id(raw: &str) -> String {
    raw.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c)).take(64).collect()
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REQUEST_ID: &str = "x-request-id";

/// The metadata every command records: who, from where, which request.
pub struct Ctx(pub CommandContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let client_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let request_id = header(REQUEST_ID).map(|r| sanitize_request_id(&r));
        let correlation_id = request_id.as_deref().and_then(|r| uuid::Uuid::parse_str(r).ok());
        Ok(Ctx(CommandContext {
            metadata: EventMetadata {
                actor_user_id: None,
                client_ip,
                user_agent: header("user-agent").map(|ua| ua.chars().take(512).collect()),
                request_id,
                correlation_id,
                causation_id: None,
            },
            idempotency_key: header(IDEMPOTENCY_KEY).map(|k| k.chars().take(255).collect()),
        }))
    }
}
