//! The other contracts' logins (000, 003, 004, 001), all backed by the one account.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::AppError;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, Detail, Django};
use crate::extract::{Ctx, FormBody, JsonBody, bearer};
use crate::openapi::{Api, Op};
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.post("/api/v1/auth/login", medagg_login, Op::public("000 catalog", "Log in (username or email)").auth_limited())
        .post("/auth/login", labeling_login, Op::public("003 labeling", "Log in; answers the labeling role").auth_limited())
        .post("/oauth/login", inference_login, Op::public("004 inference", "OAuth2 password grant (form-encoded)").auth_limited())
        .get("/login", scans_login_page, Op::public("001 scans", "Set the csrftoken cookie"))
        .post("/login", scans_login, Op::public("001 scans", "Cookie session login (CSRF protected)").auth_limited())
        .post("/logout", scans_logout, Op::public("001 scans", "End the cookie session"))
}

#[derive(Deserialize)]
struct UsernamePassword {
    username: String,
    password: String,
}

async fn medagg_login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<UsernamePassword, Detail>,
) -> ApiResult<Json<serde_json::Value>, Detail> {
    let done = state.accounts.login(&body.username, &body.password, &ctx).await?;
    Ok(Json(json!({"access_token": done.tokens.access, "token_type": "bearer"})))
}

async fn labeling_login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<UsernamePassword, Detail>,
) -> ApiResult<Json<serde_json::Value>, Detail> {
    let done = state.accounts.login(&body.username, &body.password, &ctx).await?;
    Ok(Json(json!({"access_token": done.tokens.access, "role": done.roles.labeling_role()})))
}

#[derive(Deserialize)]
struct PasswordGrant {
    #[serde(default)]
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn unprocessable(detail: &str) -> ApiError<Detail> {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
}

/// 004's OAuth2 password form. The seed documents a form; JSON is accepted as well.
async fn inference_login(State(state): State<AppState>, Ctx(ctx): Ctx, req: Request) -> ApiResult<Json<serde_json::Value>, Detail> {
    let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let grant: PasswordGrant = if is_json {
        JsonBody::<PasswordGrant, Detail>::from_request(req, &state).await?.0
    } else {
        FormBody::<PasswordGrant, Detail>::from_request(req, &state).await.map_err(|e| e.with_status(StatusCode::UNPROCESSABLE_ENTITY))?.0
    };
    if grant.grant_type.as_deref().is_some_and(|g| !g.is_empty() && g != "password") {
        return Err(unprocessable("grant_type must be \"password\""));
    }
    let (Some(username), Some(password)) = (grant.username, grant.password) else {
        return Err(unprocessable("username and password are required"));
    };
    match state.accounts.login(&username, &password, &ctx).await {
        Ok(done) => Ok(Json(json!({"access_token": done.tokens.access, "token_type": "Bearer"}))),
        Err(AppError::InvalidCredentials) => Err(unprocessable("Incorrect username or password")),
        Err(e) => Err(e.into()),
    }
}

pub const CSRF_COOKIE: &str = "csrftoken";
pub const SESSION_COOKIE: &str = "sessionid";

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn new_csrf_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Django's double-submit check: the `csrftoken` cookie must match the form field or
/// the `X-CSRFToken` header. A Bearer token needs no CSRF.
fn csrf_ok(headers: &HeaderMap, form_token: Option<&str>) -> bool {
    let Some(cookie) = cookie(headers, CSRF_COOKIE).filter(|c| !c.is_empty()) else { return false };
    let header_token = headers.get("x-csrftoken").and_then(|v| v.to_str().ok());
    [form_token, header_token].into_iter().flatten().any(|t| constant_time_eq(t.as_bytes(), cookie.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_failure() -> ApiError<Django> {
    ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "CSRF verification failed. Request aborted.")
}

async fn scans_login_page(headers: HeaderMap) -> Response {
    let token = cookie(&headers, CSRF_COOKIE).map(str::to_string).filter(|t| t.len() == 64).unwrap_or_else(new_csrf_token);
    let mut response = Json(json!({"csrftoken": token, "login": "POST username, password and csrfmiddlewaretoken"})).into_response();
    set_cookie(&mut response, format!("{CSRF_COOKIE}={token}; Path=/; SameSite=Lax; Max-Age=31449600"));
    response
}

#[derive(Deserialize)]
struct DjangoLogin {
    username: Option<String>,
    password: Option<String>,
    csrfmiddlewaretoken: Option<String>,
}

async fn scans_login(State(state): State<AppState>, Ctx(ctx): Ctx, headers: HeaderMap, req: Request) -> ApiResult<Response, Django> {
    let FormBody(form, ..) = FormBody::<DjangoLogin, Django>::from_request(req, &state).await?;
    if !csrf_ok(&headers, form.csrfmiddlewaretoken.as_deref()) {
        return Err(csrf_failure());
    }
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return Err(ApiError::bad_request("username and password are required"));
    };
    let done = match state.accounts.login(&username, &password, &ctx).await {
        Ok(done) => done,
        Err(AppError::InvalidCredentials) => {
            return Err(ApiError::unauthorized("Please enter a correct username and password."));
        }
        Err(e) => return Err(e.into()),
    };
    let roles: Vec<&str> = done.roles.iter().map(|r| r.as_str()).collect();
    let mut response = Json(json!({"success": true, "user": {"id": done.user_id, "roles": roles}})).into_response();
    let max_age = state.config.refresh_ttl.num_seconds();
    set_cookie(&mut response, format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}", done.tokens.refresh));
    // Django rotates the CSRF token at login.
    set_cookie(&mut response, format!("{CSRF_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31449600", new_csrf_token()));
    Ok(response)
}

async fn scans_logout(State(state): State<AppState>, Ctx(ctx): Ctx, headers: HeaderMap, req: Request) -> ApiResult<Response, Django> {
    let (parts, _) = req.into_parts();
    let via_bearer = bearer(&parts).is_some_and(|t| state.accounts.tokens().verify_access(t).is_ok());
    if !via_bearer && !csrf_ok(&headers, None) {
        return Err(csrf_failure());
    }
    if let Some(session) = cookie(&headers, SESSION_COOKIE)
        && let Ok(claims) = state.accounts.tokens().verify_refresh(session)
    {
        // An already-ended session is fine: logging out twice is not an error.
        match state.accounts.logout(session, claims.user_id, &ctx).await {
            Ok(()) | Err(AppError::Unauthorized(_)) | Err(AppError::TokenReuse) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut response = Json(json!({"success": true})).into_response();
    set_cookie(&mut response, format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    Ok(response)
}
