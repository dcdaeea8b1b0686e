//! Building the server from a [`Config`]: stores, ports, read models, router.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn, from_fn_with_state};
use medledger_application::codec::EventCodec;
use medledger_application::identity::accounts::Accounts;
use medledger_application::ledger::Ledger;
use medledger_application::ports::{BlobStore, IdGenerator};
use medledger_infrastructure::blobs::LocalBlobStore;
use medledger_infrastructure::crypto::SecretKey;
use medledger_infrastructure::idempotency::IdempotencyRecords;
use medledger_infrastructure::ids::SqlIdGenerator;
use medledger_infrastructure::store::{Backend, Databases};
use medledger_infrastructure::vault::SqlVault;
use medledger_infrastructure::{private_files, secret};
use medledger_projections::{Runner, RunnerHandle};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::Layer as _;
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{Config, Secret};
use crate::contexts::MODULES;
use crate::extract::REQUEST_ID;
use crate::middleware;
use crate::module::{Contexts, Unwired, Wiring};
use crate::openapi::{Api, Op};
use crate::ratelimit::{AuthClass, RateLimiter};
use crate::state::AppState;

/// Everything the CLI and the server share: stores and use cases, no HTTP.
pub struct Core {
    pub dbs: Databases,
    pub ledger: Ledger,
    pub codec: EventCodec,
    pub secret: Vec<u8>,
    /// The integer ids the contracts expose.
    pub ids: Arc<dyn IdGenerator>,
    /// File bytes by key (dataset items, archives, task images).
    pub blobs: Arc<dyn BlobStore>,
    /// Identity is the one context the shared code knows: every request is judged by it.
    pub accounts: Accounts,
    /// Every other context's state, as its module's `wire` step provided it.
    pub contexts: Contexts,
}

impl Core {
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Result<&T, Unwired> {
        self.contexts.get()
    }
}

/// How long start-up waits for the access model to read the history.
const ACCESS_CATCH_UP: Duration = Duration::from_secs(300);

pub async fn core(config: &Config) -> anyhow::Result<Core> {
    // Everything under the data directory is the server user's alone (events, keys,
    // uploads, mail with reset links).
    private_files::create_dir_all(&config.data_dir)?;
    if let Err(e) = private_files::restrict(&config.data_dir, private_files::DIR_MODE) {
        tracing::warn!(dir = %config.data_dir.display(), error = %e, "cannot make the data directory private (0700)");
    }
    let secret = secret::load_or_create(config.secret_key.as_ref().map(Secret::expose), &config.data_dir)?;
    let backend = Backend::select(config.database_url.as_deref(), &config.data_dir)?;
    let dbs = Databases::open(&backend).await?;
    let codec = EventCodec::new(Arc::new(SqlVault::new(dbs.aux.clone(), &secret))).upcasting(crate::contexts::events());
    let ledger = Ledger::new(dbs.store.clone(), codec.clone());
    for module in MODULES {
        dbs.migrate_read_models(&module.migrations()).await.with_context(|| format!("cannot migrate {}'s read models", module.name))?;
    }
    let ids: Arc<dyn IdGenerator> = Arc::new(SqlIdGenerator::new(dbs.aux.clone()));
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(config.blob_dir()));
    let accounts = crate::identity::accounts(config, &secret, &ledger, &ids);
    let mut core = Core { dbs, ledger, codec, secret, ids, blobs, accounts, contexts: Contexts::default() };
    let mut wiring = Wiring::new(config, &core);
    for module in MODULES {
        (module.wire)(&mut wiring).with_context(|| format!("cannot set up {}", module.name))?;
    }
    core.contexts = wiring.finish();
    Ok(core)
}

fn prometheus() -> Option<PrometheusHandle> {
    // One recorder per process; tests start many servers in one process.
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone()
}

pub struct App {
    pub router: Router,
    pub state: AppState,
    pub runner: RunnerHandle,
    /// The modules' background tasks, stopped with the server.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// `MEDLEDGER_METRICS_BIND`: its listener (bound by `build`) and router.
    metrics: Option<(tokio::net::TcpListener, Router)>,
}

pub async fn build(config: Config) -> anyhow::Result<App> {
    // Settings that decide who is trusted are checked before anything starts.
    let cors = crate::cors::layer(&config.cors_origins)?;
    let proxies = Arc::new(crate::proxy::TrustedProxies::parse(&config.trusted_proxies)?);
    let mut core = core(&config).await?;
    let mut wiring = Wiring::new(&config, &core);
    for module in MODULES {
        (module.open)(&mut wiring).await.with_context(|| format!("cannot open {}", module.name))?;
    }
    let contexts = wiring.finish();
    core.contexts = contexts;
    let wiring = Wiring::new(&config, &core);
    let mut runner = Runner::new(core.dbs.store.clone(), core.codec.clone(), core.dbs.read.clone(), core.dbs.aux.clone())
        .one_read_writer_at_a_time(core.dbs.read_single_writer);
    for module in MODULES {
        runner = (module.read_models)(&core.contexts).into_iter().fold(runner, Runner::projection);
        runner = (module.indexes)(&wiring).into_iter().fold(runner, Runner::index);
        runner = (module.sagas)(&wiring)?.into_iter().fold(runner, Runner::saga);
    }
    drop(wiring);
    let runner = runner.spawn();
    // Requests are judged by the access model: it must have read the whole history
    // before the first one, or a session ended before this start would count as open.
    let head = core.dbs.store.head().await.map_err(|e| anyhow::anyhow!("event store: {e}"))?.position;
    if !runner.progress().wait_for_one("access", head, ACCESS_CATCH_UP).await {
        anyhow::bail!("the access model did not read the history ({head} events) in {ACCESS_CATCH_UP:?}");
    }

    let api = MODULES.iter().fold(Api::default(), |api, module| (module.routes)(api)).get(
        "/openapi.json",
        openapi_json,
        Op::public("medledger", "This document (OpenAPI 3.1)").returns_as("application/json", crate::openapi::any_object),
    );
    // Scrapers cannot log in: with a metrics address, /metrics is served there alone.
    let api = if config.metrics_bind.is_none() { crate::ops::admin_metrics(api) } else { api };
    let document = Arc::new(api.document());

    let state = AppState {
        config: Arc::new(config.clone()),
        dbs: core.dbs.clone(),
        ledger: core.ledger,
        accounts: core.accounts,
        contexts: core.contexts,
        progress: runner.progress(),
        idempotency: Arc::new(IdempotencyRecords::new(core.dbs.aux.clone())),
        auth_limiter: Arc::new(
            RateLimiter::new(config.auth_rate_limit, Duration::from_secs(60))
                .with_class(AuthClass::Refresh.as_str(), config.refresh_rate_limit),
        ),
        api_limiter: Arc::new(RateLimiter::new(config.api_rate_limit, Duration::from_secs(60))),
        metrics: prometheus(),
        csrf_key: Arc::new(SecretKey::derive(&core.secret, "csrf").as_bytes().to_vec()),
        openapi: document,
    };
    for module in MODULES {
        // Its own errors say what failed (the admin's password, the built-in models).
        (module.start)(&state).await?;
    }

    // The auth routes are the ones that hand out credentials: `no-store` on all of them.
    let limited =
        api.limited.route_layer(from_fn_with_state(state.clone(), middleware::auth_rate_limit)).route_layer(from_fn(middleware::no_store));
    let router = api
        .router
        .merge(limited)
        .fallback(middleware::fallback)
        .layer(from_fn_with_state(state.clone(), middleware::idempotency))
        .layer(from_fn_with_state(state.clone(), middleware::api_rate_limit))
        .layer(from_fn_with_state(state.clone(), middleware::body_deadline))
        .layer(from_fn(middleware::shape_errors))
        .layer(from_fn(middleware::http_metrics))
        .layer(DefaultBodyLimit::max(config.max_json_bytes))
        .layer(from_fn_with_state(proxies, crate::proxy::resolve))
        // Outside the limits and the auth checks, so a preflight is answered before
        // them, and every answer (a 401, a 429) carries the headers a browser needs to
        // let the frontend read it; inside the request id and the security headers,
        // which preflights carry too.
        .layer(tower::util::option_layer(cors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.parse()?))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "-".to_string(), crate::extract::sanitize_request_id);
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.parse()?, MakeRequestUuid))
        .layer(from_fn_with_state(state.clone(), middleware::security_headers))
        .with_state(state.clone());
    let background = MODULES.iter().flat_map(|m| (m.background)(&state)).collect();
    let metrics = match &config.metrics_bind {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (MEDLEDGER_METRICS_BIND): {e}"))?;
            let router = crate::ops::metrics_router(state.clone()).layer(from_fn_with_state(state.clone(), middleware::security_headers));
            Some((listener, router))
        }
        None => None,
    };
    Ok(App { router, state, runner, background, metrics })
}

async fn openapi_json(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json((*state.openapi).clone())
}

impl App {
    /// Serves until `shutdown` resolves, then finishes in-flight requests and stops the
    /// projection runner after its current page.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Trailing slashes are trimmed before routing so both forms of every path answer.
        let service = NormalizePathLayer::trim_trailing_slash().layer(self.router);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let header_timeout = self.state.config.header_timeout;
        let metrics = self.metrics.map(|(listener, router)| tokio::spawn(serve_http1(listener, router, header_timeout, stop.clone())));
        serve_http1(listener, service, header_timeout, stop).await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        for task in &self.background {
            task.abort();
        }
        self.runner.stop().await;
        Ok(())
    }

    /// Where `/metrics` is served when `MEDLEDGER_METRICS_BIND` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }
}

/// HTTP/1.1 on `listener` until `stop` turns true, then lets each connection finish its
/// request in flight. Served by hyper directly rather than `axum::serve`, which gives
/// hyper no timer, so a client could take forever to send its headers (or hold an idle
/// connection open for ever): here they must arrive within `header_timeout`, which also
/// bounds how long a kept-alive connection may sit idle. Request bodies are paced by
/// `middleware::body_deadline`.
async fn serve_http1<S>(
    mut listener: tokio::net::TcpListener,
    service: S,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    use tower::ServiceExt as _;
    // Each connection holds a receiver; all have ended when `closed` resolves.
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let service = service.clone();
        let mut stop = stop.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let hyper_service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(axum::extract::ConnectInfo(remote));
                service.clone().oneshot(req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new());
            builder.header_read_timeout((!header_timeout.is_zero()).then_some(header_timeout));
            let mut conn = std::pin::pin!(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), hyper_service));
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stopping| *stopping), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}
