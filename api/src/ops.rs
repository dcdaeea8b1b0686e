//! medledger's own endpoints: health, readiness, metrics, the auditor's event stream,
//! chain verification, and the API documents.
//!
//! `/metrics` names routes, projections and the history's size: on the main port it is
//! for admins only; with `MEDLEDGER_METRICS_BIND` it is served without authentication
//! on that address instead (for a scraper, which cannot log in), and not on the main
//! port at all.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_application::chain::{VerifyError, verify_store};
use medledger_application::codec::DecodedEvent;
use medledger_application::ports::Position;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Detail};
use crate::extract::Admin;
use crate::module::Module;
use crate::openapi::{self, Api, Op};
use crate::schemas::ops as wire;
use crate::state::AppState;

/// medledger's own operations: liveness, readiness, the raw history, verification,
/// the documentation. (002's `/api/health` is identity's, in its contract's shape.)
pub const MODULE: Module = Module { routes, ..Module::named("ops") };

fn routes(api: Api) -> Api {
    api.get("/healthz", healthz, Op::public("medledger", "Liveness").returns::<wire::Status>())
        .get(
            "/readyz",
            readyz,
            Op::public("medledger", "Readiness: 503 while the event store is unreachable or a read model is stuck")
                .returns::<wire::Status>()
                .answers::<wire::Unready>(503, "The event store is unreachable, or a read model is stuck on an event it cannot decode"),
        )
        .get(
            "/api/events",
            events,
            Op::admin("medledger", "The raw history as NDJSON (from, stream, type, until)")
                .query::<EventsQuery>()
                .returns_as("application/x-ndjson", openapi::text),
        )
        .get("/api/verify", verify, Op::admin("medledger", "Verify the hash chain of the whole history").returns::<wire::Verification>())
        .get("/", landing, Op::public("medledger", "Landing page: the contracts, health, version").returns_as("text/html", openapi::text))
        .get("/docs", docs, Op::public("medledger", "Interactive API documentation (Swagger UI)").returns_as("text/html", openapi::text))
        .get(
            "/docs/{asset}",
            docs_asset,
            Op::public("medledger", "The documentation page's scripts and styles (served by this server)")
                .path_values("asset", &openapi::docs::ASSET_NAMES)
                .returns_as("text/javascript", openapi::text)
                .returns_as("text/css", openapi::text)
                .returns_as("text/plain", openapi::text),
        )
}

async fn healthz() -> Json<wire::Status> {
    Json(wire::Status { status: "ok" })
}

async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.dbs.store.ping().await {
        tracing::warn!(error = %e, "not ready: the event store is unreachable");
        let body = wire::Unready { status: "unavailable", detail: "the event store is unreachable", stuck: Vec::new() };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    // A read model stopped at an event it cannot decode serves an ever older view.
    let stuck = state.progress.stuck();
    if !stuck.is_empty() {
        let body = wire::Unready { status: "unavailable", detail: "a read model is stuck on an event it cannot decode", stuck };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(wire::Status { status: "ready" }).into_response()
}

/// `/metrics` on the main port, for admins (mounted when no metrics address is set).
pub fn admin_metrics(api: Api) -> Api {
    api.get(
        "/metrics",
        metrics_for_admins,
        Op::admin("medledger", "Prometheus metrics (admins; see MEDLEDGER_METRICS_BIND)").returns_as("text/plain", openapi::text),
    )
}

/// The router of the separate metrics address: `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics)).fallback(crate::middleware::fallback).with_state(state)
}

async fn metrics_for_admins(state: State<AppState>, _admin: Admin<Detail>) -> Response {
    metrics(state).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    let head = *state.dbs.store.watch().borrow();
    for (name, position) in state.progress.positions() {
        metrics::gauge!("medledger_projection_lag_events", "projection" => name).set((head - position.max(0)) as f64);
    }
    metrics::gauge!("medledger_head_position").set(head as f64);
    let body = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Deserialize, JsonSchema)]
struct EventsQuery {
    /// Events after this position.
    #[schemars(with = "Option<u64>")]
    from: Option<String>,
    /// One stream's events only.
    stream: Option<String>,
    /// One event type only.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Up to this time: RFC 3339, or `YYYY-MM-DD` for the whole of that day.
    until: Option<String>,
}

fn parse_until(raw: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(t.timestamp_micros());
    }
    let day = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    // A bare date means the whole of that day.
    Some(day.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros() - 1)
}

/// One NDJSON line. Password hashes are redacted: an auditor needs to see that a
/// password changed, never the hash (the line's `hash` still covers the stored bytes).
pub fn event_line(e: &DecodedEvent) -> Value {
    let r = &e.recorded;
    let mut payload = e.data.clone();
    if let Some(h) = payload.get_mut("password_hash") {
        *h = json!("[redacted]");
    }
    if e.erased
        && let Some(p) = payload.get_mut("personal")
    {
        *p = json!(medledger_domain::ERASED);
    }
    json!({
        "position": r.position,
        "stream": r.stream_id,
        "version": r.version,
        "event_id": r.event_id,
        "type": r.event_type,
        "schema_version": r.schema_version,
        "recorded_at": r.recorded_at().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "payload": payload,
        "metadata": e.metadata,
        "prev_hash": hex::encode(r.prev_hash),
        "hash": hex::encode(r.hash),
    })
}

/// NDJSON, in global order, streamed page by page so a long history never sits in
/// memory. Personal data is shown opened (admins only), `[erased]` once shredded.
async fn events(State(state): State<AppState>, admin: Admin<Detail>, Query(q): Query<EventsQuery>) -> ApiResult<Response, Detail> {
    let from: Position = match q.from.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s
            .parse()
            .ok()
            .filter(|p: &i64| *p >= 0)
            .ok_or_else(|| ApiError::bad_request("from must be a position (a whole number >= 0)"))?,
    };
    let until = match q.until.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_until(s).ok_or_else(|| ApiError::bad_request("until must be an RFC 3339 time or YYYY-MM-DD"))?),
    };
    let stream_filter = q.stream.filter(|s| !s.is_empty());
    let type_filter = q.event_type.filter(|s| !s.is_empty());
    struct Cursor {
        after: Position,
        done: bool,
    }
    let body = futures::stream::unfold(Cursor { after: from, done: false }, move |mut cursor| {
        let state = state.clone();
        let (stream_filter, type_filter) = (stream_filter.clone(), type_filter.clone());
        let caller = admin.0.clone();
        async move {
            // A long download is judged again page by page: an admin demoted or logged
            // out meanwhile gets no more of the history.
            let still_admin = state.accounts.access().recheck(&caller).is_ok_and(|now| now.is_admin());
            if cursor.done || !still_admin {
                return None;
            }
            // A stream filter reads that stream's events only (once), not the history.
            let page = match &stream_filter {
                Some(stream) => {
                    cursor.done = true;
                    state
                        .dbs
                        .store
                        .read_stream(stream)
                        .await
                        .map(|events| events.into_iter().filter(|e| e.position > cursor.after).collect::<Vec<_>>())
                }
                None => state.dbs.store.read_all(cursor.after, 500).await,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), Cursor { done: true, ..cursor })),
            };
            let last = page.last().map(|e| e.position)?;
            let mut chunk = String::new();
            for recorded in page {
                if until.is_some_and(|u| recorded.recorded_at_us > u) {
                    cursor.done = true;
                    break;
                }
                if stream_filter.as_deref().is_some_and(|s| s != recorded.stream_id)
                    || type_filter.as_deref().is_some_and(|t| t != recorded.event_type)
                {
                    continue;
                }
                match state.ledger.decode(recorded).await {
                    Ok(decoded) => {
                        chunk.push_str(&event_line(&decoded).to_string());
                        chunk.push('\n');
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), Cursor { done: true, ..cursor })),
                }
            }
            cursor.after = last;
            Some((Ok::<_, std::io::Error>(chunk), cursor))
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response())
}

async fn verify(State(state): State<AppState>, _admin: Admin<Detail>) -> ApiResult<Json<wire::Verification>, Detail> {
    match verify_store(&*state.dbs.store, |_| {}).await {
        Ok(report) => Ok(Json(wire::Verification::Valid(wire::ValidChain {
            valid: true,
            events: report.events,
            head: wire::ChainHead { position: report.head.position, hash: hex::encode(report.head.hash) },
            digest: report.head.digest(),
        }))),
        Err(VerifyError::Broken(b)) => {
            Ok(Json(wire::Verification::Broken(wire::BrokenChain { valid: false, position: b.position, reason: b.reason })))
        }
        Err(VerifyError::Store(e)) => Err(medledger_application::AppError::from(e).into()),
    }
}

/// Swagger UI over `/openapi.json`, from files compiled into the binary.
pub async fn docs() -> Response {
    openapi::docs::page()
}

async fn docs_asset(Path(name): Path<String>) -> Response {
    openapi::docs::asset(&name).unwrap_or_else(|| crate::middleware::shaped("/docs", StatusCode::NOT_FOUND, "Not found.", "not_found"))
}

async fn landing(State(state): State<AppState>) -> Response {
    openapi::docs::landing(state.dbs.store.ping().await.is_ok())
}
