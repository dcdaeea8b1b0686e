//! The other contracts' logins (000, 003, 004, 001), all backed by the one account.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use medledger_application::AppError;
use medledger_application::identity::AccountError;
use medledger_application::identity::access::Caller;
use rand::RngCore as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::error::{ApiError, ApiResult, Detail, Django};
use crate::extract::{BrowserUser, Ctx, FastApiError, FormBody, FormEncoding, FormFields, Invalid, JsonBody, bearer};
use crate::openapi::{Api, Op};
use crate::schemas::errors::Unprocessable;
use crate::schemas::logins as wire;
use crate::state::AppState;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/v1/auth/login",
        medagg_login,
        Op::public("000 catalog", "Log in (username or email)")
            .auth_limited()
            .json::<UsernamePassword>()
            .form::<UsernamePassword>()
            .multipart::<UsernamePassword>()
            .returns::<wire::BearerToken>()
            .error(401, "Wrong username or password"),
    )
    .post(
        "/auth/login",
        labeling_login,
        Op::public("003 labeling", "Log in; answers the labeling role")
            .auth_limited()
            .json::<UsernamePassword>()
            .returns::<wire::LabelingToken>()
            .error(401, "Wrong username or password"),
    )
    .post(
        "/oauth/login",
        inference_login,
        Op::public("004 inference", "OAuth2 password grant (form-encoded)")
            .auth_limited()
            .form::<wire::PasswordForm>()
            .multipart::<wire::PasswordForm>()
            .json::<wire::PasswordForm>()
            .returns::<wire::BearerToken>()
            .answers::<Unprocessable>(422, "Missing fields (FastAPI's list) or \"Incorrect username or password\"")
            .never(415),
    )
    .get("/login", scans_login_page, Op::public("001 scans", "Set the csrftoken cookie").returns::<wire::CsrfToken>())
    .post(
        "/login",
        scans_login,
        Op::public("001 scans", "Cookie session login (CSRF protected)")
            .auth_limited()
            .form::<DjangoLogin>()
            .returns::<wire::SessionLogin>()
            .error(401, "Wrong username or password")
            .error(403, "CSRF verification failed"),
    )
    .post(
        "/logout",
        scans_logout,
        Op::public("001 scans", "End the cookie session (a Bearer caller needs no CSRF token)")
            .returns::<wire::Success>()
            .error(403, "CSRF verification failed"),
    )
}

#[derive(Deserialize, JsonSchema)]
struct UsernamePassword {
    username: String,
    password: String,
}

/// 000's login. The seed shows a JSON body; its DRF backend's default parsers read
/// urlencoded and multipart forms too, and login forms (HTML, `FormData`, `requests`'
/// `data=`) send those, so all three are read alike.
async fn medagg_login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    form: FormFields<Detail>,
) -> ApiResult<Json<serde_json::Value>, Detail> {
    let required = |name: &str| form.get(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::field(name, "This field is required."));
    let (username, password) = (required("username")?, required("password")?);
    let done = state.accounts.login(username, password, &ctx).await?;
    Ok(Json(json!(wire::BearerToken { access_token: done.tokens.access, token_type: "bearer" })))
}

async fn labeling_login(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<UsernamePassword, Detail>,
) -> ApiResult<Json<serde_json::Value>, Detail> {
    let done = state.accounts.login(&body.username, &body.password, &ctx).await?;
    Ok(Json(json!(wire::LabelingToken { access_token: done.tokens.access, role: done.roles.labeling_role() })))
}

fn unprocessable(detail: &str) -> ApiError<Detail> {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
}

/// 004's OAuth2 password form, read as FastAPI's `OAuth2PasswordRequestForm` reads it:
/// urlencoded as the seed documents, multipart as `requests.post(files=...)` and a
/// browser's `FormData` send it, and JSON as the seed's example body is written. A body
/// of any other type reads as an empty form, as Starlette reads it. Missing fields (an
/// empty one is missing in a form) and a `grant_type` other than "password" are
/// FastAPI's 422 list, each worded as FastAPI words it.
async fn inference_login(State(state): State<AppState>, Ctx(ctx): Ctx, req: Request) -> Result<Json<serde_json::Value>, FastApiError> {
    let fields = match FormEncoding::of(req.headers()) {
        Some(_) => FormFields::<Detail>::from_request(req, &state).await?.fields,
        None => Default::default(),
    };
    let filled = |name: &str| fields.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let mut invalid = Vec::new();
    if let Some(grant) = filled("grant_type")
        && grant != "password"
    {
        let mismatch =
            Invalid::new("string_pattern_mismatch", "body", "grant_type", "String should match pattern '^password$'", json!(grant));
        invalid.push(mismatch.with_ctx(json!({"pattern": "^password$"})));
    }
    let (username, password) = (filled("username"), filled("password"));
    for (name, value) in [("username", username), ("password", password)] {
        if value.is_none() {
            invalid.push(Invalid::missing("body", name));
        }
    }
    let (Some(username), Some(password), true) = (username, password, invalid.is_empty()) else {
        return Err(FastApiError::Invalid(invalid));
    };
    match state.accounts.login(username, password, &ctx).await {
        Ok(done) => Ok(Json(json!(wire::BearerToken { access_token: done.tokens.access, token_type: "Bearer" }))),
        Err(AppError::InvalidCredentials) => Err(unprocessable("Incorrect username or password").into()),
        Err(e) => Err(e.into()),
    }
}

pub const CSRF_COOKIE: &str = "csrftoken";
/// The session cookie's name; over HTTPS `__Host-` binds it to this host, path `/`,
/// and `Secure`. The CSRF cookie keeps Django's plain name: clients written from the
/// seed read it by that name (`session.cookies.get('csrftoken')`).
const SESSION_COOKIE: &str = "sessionid";
const HOST_SESSION_COOKIE: &str = "__Host-sessionid";
/// Django's CSRF cookie lifetime (a year).
const CSRF_MAX_AGE: i64 = 31_449_600;

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

fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config.https { HOST_SESSION_COOKIE } else { SESSION_COOKIE }
}

/// The browser session cookie a request carries, if any.
pub fn session_cookie<'a>(headers: &'a HeaderMap, state: &AppState) -> Option<&'a str> {
    cookie(headers, session_cookie_name(state)).filter(|c| !c.is_empty())
}

fn cookie_attributes(state: &AppState, max_age: i64) -> String {
    let secure = if state.config.https { "; Secure" } else { "" };
    format!("Path=/; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// A CSRF token: a random nonce and a MAC over it and what the token is bound to (the
/// browser session, or nothing before login). The server adopts only tokens it made,
/// and a token made for one session is worthless in another.
fn csrf_token(state: &AppState, binding: &str) -> String {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let mac = csrf_mac(state, binding, &nonce);
    format!("{nonce}{mac}")
}

fn csrf_mac(state: &AppState, binding: &str, nonce: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&state.csrf_key) else { return String::new() };
    mac.update(binding.as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn csrf_valid(state: &AppState, binding: &str, token: &str) -> bool {
    let (Some(nonce), Some(mac)) = (token.get(..32), token.get(32..)) else { return false };
    token.len() == 64 && constant_time_eq(mac.as_bytes(), csrf_mac(state, binding, nonce).as_bytes())
}

const ANONYMOUS: &str = "anonymous";

fn session_binding(session_id: uuid::Uuid) -> String {
    format!("session:{session_id}")
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Django's double-submit check, with tokens the server made: the `csrftoken` cookie
/// must be one of ours for `bindings`, and match the form field or `X-CSRFToken`.
fn csrf_ok(state: &AppState, headers: &HeaderMap, form_token: Option<&str>, bindings: &[String]) -> bool {
    let Some(cookie) = cookie(headers, CSRF_COOKIE).filter(|c| !c.is_empty()) else { return false };
    if !bindings.iter().any(|b| csrf_valid(state, b, cookie)) {
        return false;
    }
    let header_token = headers.get("x-csrftoken").and_then(|v| v.to_str().ok());
    [form_token, header_token].into_iter().flatten().any(|t| constant_time_eq(t.as_bytes(), cookie.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_failure() -> ApiError<Django> {
    ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "CSRF verification failed. Request aborted.")
}

/// The open browser session a request's cookie names, if it is still open.
async fn browser_session(state: &AppState, headers: &HeaderMap) -> Option<Caller> {
    state.accounts.judge_browser(session_cookie(headers, state)?).await.ok()
}

/// What a CSRF token of this request may be bound to: the browser session it carries
/// (only that, once there is one), or no session: a login form fetched before logging
/// in, which a login accepts even from a browser still holding an older session.
async fn csrf_bindings(state: &AppState, headers: &HeaderMap, login: bool) -> Vec<String> {
    match browser_session(state, headers).await {
        Some(caller) if login => vec![ANONYMOUS.to_string(), session_binding(caller.session_id)],
        Some(caller) => vec![session_binding(caller.session_id)],
        None => vec![ANONYMOUS.to_string()],
    }
}

/// Sets the `csrftoken` cookie. A cookie the client sent is kept only if the server
/// made it for this request's session (or for no session): a value the client chose
/// is never adopted.
async fn scans_login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let binding = browser_session(&state, &headers).await.map_or_else(|| ANONYMOUS.to_string(), |c| session_binding(c.session_id));
    let token = cookie(&headers, CSRF_COOKIE)
        .filter(|t| csrf_valid(&state, &binding, t))
        .map(str::to_string)
        .unwrap_or_else(|| csrf_token(&state, &binding));
    let mut response =
        Json(wire::CsrfToken { csrftoken: token.clone(), login: "POST username, password and csrfmiddlewaretoken" }).into_response();
    set_cookie(&mut response, format!("{CSRF_COOKIE}={token}; {}", cookie_attributes(&state, CSRF_MAX_AGE)));
    response
}

#[derive(Deserialize, JsonSchema)]
struct DjangoLogin {
    username: Option<String>,
    password: Option<String>,
    csrfmiddlewaretoken: Option<String>,
}

async fn scans_login(State(state): State<AppState>, Ctx(ctx): Ctx, headers: HeaderMap, req: Request) -> ApiResult<Response, Django> {
    let FormBody(form, ..) = FormBody::<DjangoLogin, Django>::from_request(req, &state).await?;
    if !csrf_ok(&state, &headers, form.csrfmiddlewaretoken.as_deref(), &csrf_bindings(&state, &headers, true).await) {
        return Err(csrf_failure());
    }
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return Err(ApiError::bad_request("username and password are required"));
    };
    let (done, session) = match state.accounts.login_browser(&username, &password, &ctx).await {
        Ok(done) => done,
        Err(AppError::InvalidCredentials) => {
            return Err(ApiError::unauthorized("Please enter a correct username and password."));
        }
        Err(e) => return Err(e.into()),
    };
    // The next request may come before this process's access model has read the login.
    state.caught_up_on(&[medledger_projections::identity::ACCESS], done.position).await;
    let roles: Vec<&str> = done.roles.iter().map(|r| r.as_str()).collect();
    let mut response = Json(wire::SessionLogin { success: true, user: wire::SessionUser { id: done.user_id, roles } }).into_response();
    let max_age = state.config.contexts.identity.refresh_ttl.num_seconds();
    let name = session_cookie_name(&state);
    set_cookie(&mut response, format!("{name}={session}; HttpOnly; {}", cookie_attributes(&state, max_age)));
    // Django rotates the CSRF token at login; ours is bound to the new session.
    let token = csrf_token(&state, &session_binding(done.session_id));
    set_cookie(&mut response, format!("{CSRF_COOKIE}={token}; {}", cookie_attributes(&state, CSRF_MAX_AGE)));
    Ok(response)
}

async fn scans_logout(State(state): State<AppState>, Ctx(ctx): Ctx, headers: HeaderMap, req: Request) -> ApiResult<Response, Django> {
    let (mut parts, _) = req.into_parts();
    // A Bearer caller needs no CSRF token, and logs out the token's own session.
    let by_bearer = match bearer(&parts) {
        Some(_) => BrowserUser::from_request_parts(&mut parts, &state).await.ok().map(|BrowserUser(caller)| caller),
        None => None,
    };
    if by_bearer.is_none() && !csrf_ok(&state, &headers, None, &csrf_bindings(&state, &headers, false).await) {
        return Err(csrf_failure());
    }
    let session = match by_bearer {
        Some(caller) => Some(caller),
        None => browser_session(&state, &headers).await,
    };
    // An already-ended session is fine: logging out twice is not an error.
    if let Some(caller) = session {
        match state.accounts.close_session(caller.session_id, caller.user_id, &ctx).await {
            Ok(Some(position)) => state.caught_up_on(&[medledger_projections::identity::ACCESS], position).await,
            Ok(None) | Err(AppError::Account(AccountError::TokenInvalid | AccountError::UserInactive)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut response = Json(wire::Success { success: true }).into_response();
    let name = session_cookie_name(&state);
    set_cookie(&mut response, format!("{name}=; HttpOnly; {}", cookie_attributes(&state, 0)));
    Ok(response)
}
