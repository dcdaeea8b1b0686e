//! Extractors that fail in the contract's own error shape.

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use medledger_application::identity::access::{Caller, Denied};
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

/// The caller judged again after the body arrived: a body may take minutes (it is only
/// held to a minimum average rate), and a demotion, deactivation or logout recorded
/// meanwhile must stop the request before it changes anything.
fn judged_again<S: Shape>(state: &AppState, caller: &Caller) -> Result<Caller, ApiError<S>> {
    state.accounts.access().recheck(caller).map_err(|d| Refusal::from(d).into())
}

impl<S: Shape> Auth<S> {
    /// Re-judges the caller; call after reading the body, before acting on it.
    pub fn still(&self, state: &AppState) -> Result<(), ApiError<S>> {
        judged_again::<S>(state, &self.0).map(|_| ())
    }
}

impl<S: Shape> Admin<S> {
    /// Re-judges the caller, an admin still; call after reading the body.
    pub fn still(&self, state: &AppState) -> Result<(), ApiError<S>> {
        if !judged_again::<S>(state, &self.0)?.is_admin() {
            return Err(ApiError::forbidden());
        }
        Ok(())
    }
}

impl<S: Shape> FromRequestParts<AppState> for Auth<S> {
    type Rejection = ApiError<S>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer_caller(parts, state).await?, PhantomData))
    }
}

/// A caller who may be anonymous: `None` without an `Authorization` header. A header
/// that is there must hold a good token: a bad, expired or ended one is still a 401, so
/// a client never mistakes a stale login for browsing anonymously.
pub struct MaybeAuth<S>(pub Option<Caller>, pub PhantomData<S>);

impl<S: Shape> FromRequestParts<AppState> for MaybeAuth<S> {
    type Rejection = ApiError<S>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(Self(None, PhantomData));
        }
        Ok(Self(Some(bearer_caller(parts, state).await?), PhantomData))
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
        let cookie = crate::identity::session_cookie(&parts.headers, state).ok_or_else(|| refused(Refusal::Missing))?;
        state.accounts.judge_browser(cookie).await.map(Self).map_err(|d| refused(d.into()))
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
        // Behind a trusted proxy, the address it forwards for (`proxy::resolve`).
        let client_ip = crate::proxy::client_ip(&parts.extensions).map(|ip| ip.to_string());
        let request_id = header(REQUEST_ID).map(|r| sanitize_request_id(&r));
        // Every request begins a chain: its events, and whatever sagas do because of
        // them, carry one correlation id (the request id when it is a UUID).
        let correlation_id = request_id.as_deref().and_then(|r| uuid::Uuid::parse_str(r).ok()).unwrap_or_else(uuid::Uuid::new_v4);
        Ok(Ctx(CommandContext {
            metadata: EventMetadata {
                actor_user_id: None,
                client_ip,
                user_agent: header("user-agent").map(|ua| ua.chars().take(512).collect()),
                request_id,
                correlation_id: Some(correlation_id),
                causation_id: None,
            },
            idempotency_key: header(IDEMPOTENCY_KEY).map(|k| k.chars().take(255).collect()),
        }))
    }
}

/// How a form body came: the three encodings a login form is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormEncoding {
    /// `application/x-www-form-urlencoded`: `requests.post(data=...)`, curl `-d`, HTML forms.
    UrlEncoded,
    /// `multipart/form-data`: `requests.post(files=...)`, a browser's `FormData`.
    Multipart,
    /// `application/json` (or `+json`): an object whose values are the fields.
    Json,
}

impl FormEncoding {
    /// The encoding a request's `Content-Type` names, if it is one of the three.
    pub fn of(headers: &axum::http::HeaderMap) -> Option<Self> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match ct.as_str() {
            "application/x-www-form-urlencoded" => Some(Self::UrlEncoded),
            "multipart/form-data" => Some(Self::Multipart),
            "application/json" => Some(Self::Json),
            _ if ct.starts_with("application/") && ct.ends_with("+json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// A form's text fields, however the client encoded it (see [`FormEncoding`]), for
/// routes whose clients send one form in several encodings (OAuth2's password form,
/// DRF's parsers). A repeated name keeps its last value, as Starlette's and Django's
/// `form[name]` do; multipart file parts are not text fields and are skipped; JSON
/// numbers and booleans read as written, `null` as absent. Another content type is 415;
/// the body is bounded by the route's body limit (413).
pub struct FormFields<S> {
    pub fields: std::collections::HashMap<String, String>,
    pub encoding: FormEncoding,
    shape: PhantomData<S>,
}

impl<S> FormFields<S> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

fn multipart_error<S: Shape>(e: &axum::extract::multipart::MultipartError) -> ApiError<S> {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request body is too large.")
    } else {
        ApiError::bad_request(format!("Invalid multipart data: {e}."))
    }
}

/// A multipart body's parts, or 400 when the content type carries no boundary.
pub async fn multipart<S: Shape>(req: Request, state: &AppState) -> Result<axum::extract::Multipart, ApiError<S>> {
    axum::extract::Multipart::from_request(req, state).await.map_err(|e| ApiError::bad_request(format!("Invalid multipart data: {e}.")))
}

/// The next part of a multipart body, in the contract's shape when the body is broken.
pub async fn next_part<'a, S: Shape>(
    form: &'a mut axum::extract::Multipart,
) -> Result<Option<axum::extract::multipart::Field<'a>>, ApiError<S>> {
    form.next_field().await.map_err(|e| multipart_error(&e))
}

/// The next chunk of a part, as it arrives.
pub async fn next_chunk<S: Shape>(field: &mut axum::extract::multipart::Field<'_>) -> Result<Option<Bytes>, ApiError<S>> {
    field.chunk().await.map_err(|e| multipart_error(&e))
}

impl<S: Shape> FromRequest<AppState> for FormFields<S> {
    type Rejection = ApiError<S>;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(encoding) = FormEncoding::of(req.headers()) else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the form as application/x-www-form-urlencoded, multipart/form-data or application/json.",
            ));
        };
        let mut fields = std::collections::HashMap::new();
        match encoding {
            FormEncoding::UrlEncoded => {
                let bytes = body_bytes::<S>(req, state).await?;
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::bad_request(format!("Invalid form: {e}")))?;
                fields.extend(pairs);
            }
            FormEncoding::Multipart => {
                let mut form = multipart::<S>(req, state).await?;
                while let Some(field) = next_part::<S>(&mut form).await? {
                    let Some(name) = field.name().map(str::to_string) else { continue };
                    if field.file_name().is_some() {
                        continue;
                    }
                    let text = field.text().await.map_err(|e| multipart_error::<S>(&e))?;
                    fields.insert(name, text);
                }
            }
            FormEncoding::Json => {
                let bytes = body_bytes::<S>(req, state).await?;
                let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| parse_error::<S>(&e))?;
                let serde_json::Value::Object(object) = value else {
                    return Err(ApiError::bad_request("Invalid request body - expected a JSON object"));
                };
                for (name, value) in object {
                    let text = match value {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => value.to_string(),
                        _ => return Err(ApiError::field(&name, "Not a valid string.")),
                    };
                    fields.insert(name, text);
                }
            }
        }
        Ok(Self { fields, encoding, shape: PhantomData })
    }
}

/// One entry of FastAPI's 422 list, worded as pydantic v2 words it (FastAPI 0.11x+:
/// no `url`; `ctx` only where pydantic sends one).
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "ValidationIssue")]
pub struct Invalid {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: [String; 2],
    pub msg: String,
    pub input: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<serde_json::Value>,
}

impl Invalid {
    /// `place` is FastAPI's first `loc` element: `body`, `query`, `path`, `header`.
    pub fn new(kind: &'static str, place: &str, field: &str, msg: impl Into<String>, input: serde_json::Value) -> Self {
        Self { kind, loc: [place.to_string(), field.to_string()], msg: msg.into(), input, ctx: None }
    }

    /// A required field that is absent (or, in a form, empty: FastAPI reads `""` as absent).
    pub fn missing(place: &str, field: &str) -> Self {
        Self::new("missing", place, field, "Field required", serde_json::Value::Null)
    }

    pub fn with_ctx(mut self, ctx: serde_json::Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// An error of a FastAPI contract (004): `{"detail": "..."}` as every other 004 error,
/// or FastAPI's request validation error, 422 `{"detail": [{type, loc, msg, input}]}`.
pub enum FastApiError {
    Detail(ApiError<crate::error::Detail>),
    Invalid(Vec<Invalid>),
}

impl From<crate::module::Unwired> for FastApiError {
    fn from(e: crate::module::Unwired) -> Self {
        Self::Detail(e.into())
    }
}

impl From<ApiError<crate::error::Detail>> for FastApiError {
    fn from(e: ApiError<crate::error::Detail>) -> Self {
        Self::Detail(e)
    }
}

impl From<medledger_application::AppError> for FastApiError {
    fn from(e: medledger_application::AppError) -> Self {
        Self::Detail(e.into())
    }
}

impl From<Invalid> for FastApiError {
    fn from(e: Invalid) -> Self {
        Self::Invalid(vec![e])
    }
}

impl axum::response::IntoResponse for FastApiError {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Detail(e) => e.into_response(),
            Self::Invalid(errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(serde_json::json!({ "detail": errors }))).into_response()
            }
        }
    }
}
