//! Cross-cutting HTTP behaviour: error shapes for routing failures, rate limits,
//! idempotency keys, request metrics, security headers, `no-store` on credentials, and
//! the minimum rate a request body must arrive at.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use medledger_infrastructure::idempotency::SavedResponse;
use sha2::{Digest, Sha256};

use crate::error::ShapeKind;
use crate::extract::{IDEMPOTENCY_KEY, bearer};
use crate::ratelimit::AuthClass;
use crate::state::AppState;

pub fn shaped(path: &str, status: StatusCode, detail: &str, code: &str) -> Response {
    let body = crate::contexts::shape_for(path).render(detail, code, &Default::default());
    (status, axum::Json(body)).into_response()
}

/// Unknown routes: 404 in the shape of the contract the path belongs to.
pub async fn fallback(req: Request) -> Response {
    shaped(req.uri().path(), StatusCode::NOT_FOUND, "Not found.", "not_found")
}

/// Client errors produced before a handler ran (wrong method, a rejected body) come
/// out of axum with a plain-text or empty body; give them the contract's shape.
pub async fn shape_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed.",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large.",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type.",
        StatusCode::NOT_FOUND => "Not found.",
        _ => "Bad request.",
    };
    let mut shaped = shaped(&path, status, detail, "invalid");
    if let Some(allow) = response.headers().get(header::ALLOW) {
        shaped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    shaped
}

/// The client's address (behind a trusted proxy, the one it forwards for).
fn client_ip(req: &Request) -> String {
    crate::proxy::client_ip(req.extensions()).map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

fn too_many(path: &str, retry_after: u64) -> Response {
    let mut r = shaped(
        path,
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Request was throttled. Expected available in {retry_after} seconds."),
        "throttled",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Auth endpoints: N requests per minute per client address and endpoint class
/// (logins, registration, password resets, token refreshes: one bucket each).
pub async fn auth_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| req.uri().path(), |m| m.as_str());
    let class = AuthClass::of(route).as_str();
    if let Err(retry) = state.auth_limiter.check_in(class, &client_ip(&req)) {
        return too_many(req.uri().path(), retry);
    }
    next.run(req).await
}

/// The 002 API: N requests per minute per authenticated user.
pub async fn api_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if crate::contexts::shape_for(path) == ShapeKind::Myo {
        let (parts, body) = req.into_parts();
        let user = bearer(&parts).and_then(|t| state.accounts.tokens().verify_access(t).ok()).map(|c| c.user_id);
        let req = Request::from_parts(parts, body);
        if let Some(user) = user
            && let Err(retry) = state.api_limiter.check(&user.to_string())
        {
            return too_many(req.uri().path(), retry);
        }
        return next.run(req).await;
    }
    next.run(req).await
}

/// `Idempotency-Key` on a state-changing request of an authenticated caller: the first
/// response is stored and replayed for retries with the same key and body; the same key
/// with another body is refused (422). Anonymous requests (logins, registration) are
/// not recorded: callers cannot be told apart. A response that carries credentials
/// (`Cache-Control: no-store`, or a cookie) is never stored: the table would hold live
/// tokens in plain text. A retry of such a request runs again (a repeated refresh gets
/// the same answer within the refresh grace window, and after it is a reuse of its
/// refresh token, which ends that session).
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mutating = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let key = req.headers().get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (true, Some(key)) = (mutating, key) else { return next.run(req).await };
    // The request is kept whole to compare retries: only small command bodies (JSON,
    // forms, none). Uploads stream to their handler and are not replayed.
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let command_body = content_type.is_empty()
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/x-www-form-urlencoded")
        || (content_type.starts_with("application/") && content_type.contains("+json"));
    if !command_body {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    // A stored answer goes back only to a caller whose session and account stand now;
    // anyone else reaches the handler, which refuses them.
    let Ok(caller) = crate::extract::bearer_caller(&parts, &state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let subject = caller.user_id;
    let scope = format!("{subject} {} {}", parts.method, path.trim_end_matches('/'));
    let bytes = match axum::body::to_bytes(body, state.config.max_json_bytes).await {
        Ok(b) => b,
        Err(_) => return shaped(&path, StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large.", "payload_too_large"),
    };
    let request_hash = hex::encode(Sha256::digest(&bytes));
    match state.idempotency.find(&scope, &key).await {
        Ok(Some(saved)) if saved.request_hash == request_hash => return replay(saved),
        Ok(Some(_)) => {
            return shaped(
                &path,
                StatusCode::UNPROCESSABLE_ENTITY,
                "This Idempotency-Key was already used with a different request.",
                "idempotency_key_reused",
            );
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "idempotency lookup failed");
            return shaped(&path, StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable", "unavailable");
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || carries_credentials(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return shaped(&path, StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.", "server_error");
    };
    let saved = SavedResponse {
        request_hash,
        status: status.as_u16(),
        content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Err(e) = state.idempotency.save(&scope, &key, &saved).await {
        tracing::warn!(error = %e, "could not store the idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(saved: SavedResponse) -> Response {
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    let mut r = (status, saved.body).into_response();
    if let Ok(ct) = HeaderValue::from_str(&saved.content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

/// Request count and latency per route and status.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    // hyper accepts any token as a method; a label per made-up method would grow the
    // metrics without bound.
    let method = match *req.method() {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            req.method().to_string()
        }
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("medledger_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("medledger_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Whether a response must not be kept anywhere: it says `no-store`, or sets a cookie.
fn carries_credentials(response: &Response) -> bool {
    let headers = response.headers();
    let no_store = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-store"));
    no_store || headers.contains_key(header::SET_COOKIE)
}

/// On the routes that issue credentials (logins, registration, refresh, password reset):
/// tokens in a response must not be kept by a browser, a proxy, or the idempotency table.
pub async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sent on every response. `Strict-Transport-Security` only when clients reach the
/// server over HTTPS (`MEDLEDGER_HTTPS`): over plain HTTP a browser ignores it, and
/// sending it from a server that is not behind TLS would say something untrue.
pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if state.config.https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    // A cookie is a credential wherever it is set.
    if headers.contains_key(header::SET_COOKIE) && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A request body must keep coming: from `MEDLEDGER_BODY_TIMEOUT_SECS` after the server
/// starts reading it, it must have averaged at least `MEDLEDGER_BODY_MIN_BYTES_PER_SEC`,
/// or the request ends with 408 and the connection is closed. A rate rather than a
/// total time: a large upload over a normal connection takes as long as it needs, a
/// client that dribbles (one byte a second) cannot hold a connection and a handler.
pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (grace, rate) = (state.config.body_timeout, state.config.body_min_rate);
    // No body (most GETs): nothing to pace, no timer to make.
    if rate == 0 || http_body::Body::size_hint(req.body()).upper() == Some(0) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| Body::new(PacedBody::new(body, grace, rate, timed_out.clone())));
    let response = next.run(req).await;
    if !timed_out.load(Ordering::Acquire) {
        return response;
    }
    let mut r = shaped(&path, StatusCode::REQUEST_TIMEOUT, "The request body was not received in time.", "request_timeout");
    // The rest of the body is not read: the connection cannot carry another request.
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct BodyTooSlow;

/// A request body that fails once it falls behind its minimum rate. The clock starts
/// when the handler first reads: time a request spends waiting for the server (a queue,
/// a permit) before its body is wanted is not the client's.
struct PacedBody {
    inner: Body,
    grace: Duration,
    min_rate: u32,
    received: u64,
    started: Option<tokio::time::Instant>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl PacedBody {
    fn new(inner: Body, grace: Duration, min_rate: u32, timed_out: Arc<AtomicBool>) -> Self {
        Self { inner, grace, min_rate, received: 0, started: None, deadline: None, timed_out }
    }
}

/// When `received` bytes stop being enough: the grace period plus the time they buy at
/// the minimum rate.
fn due(started: tokio::time::Instant, grace: Duration, received: u64, min_rate: u32) -> tokio::time::Instant {
    started + grace + Duration::from_secs_f64(received as f64 / f64::from(min_rate.max(1)))
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let started = *this.started.get_or_insert_with(tokio::time::Instant::now);
        let first = due(started, this.grace, this.received, this.min_rate);
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    deadline.as_mut().reset(due(started, this.grace, this.received, this.min_rate));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if deadline.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
                }
                Poll::Pending
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
