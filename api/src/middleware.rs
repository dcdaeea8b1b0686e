//! Cross-cutting HTTP behaviour: error shapes for routing failures, rate limits,
//! idempotency keys, request metrics.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use medledger_infrastructure::aux::SavedResponse;
use sha2::{Digest, Sha256};

use crate::error::ShapeKind;
use crate::extract::{IDEMPOTENCY_KEY, bearer};
use crate::state::AppState;

pub fn shaped(path: &str, status: StatusCode, detail: &str, code: &str) -> Response {
    let body = ShapeKind::for_path(path).render(detail, code, &Default::default());
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

fn client_ip(req: &Request) -> String {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
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

/// Auth endpoints: N requests per minute per client address.
pub async fn auth_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(retry) = state.auth_limiter.check(&client_ip(&req)) {
        return too_many(req.uri().path(), retry);
    }
    next.run(req).await
}

/// The 002 API: N requests per minute per authenticated user.
pub async fn api_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if ShapeKind::for_path(path) == ShapeKind::Myo {
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
/// not recorded: their responses carry tokens, and callers cannot be told apart.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mutating = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let key = req.headers().get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (true, Some(key)) = (mutating, key) else { return next.run(req).await };
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let Some(subject) = bearer(&parts).and_then(|t| state.accounts.tokens().verify_access(t).ok()).map(|c| c.user_id) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
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
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
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
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("medledger_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("medledger_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
