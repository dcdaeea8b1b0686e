//! Scans over HTTP (contract 001, ToothFairy4M): what is served of it so far, behind
//! its browser session. Its login and logout are identity's; uploads, the file registry
//! and processing jobs are issue 18.

use axum::Json;
use axum::extract::State;

use crate::error::{ApiResult, Django, ShapeKind};
use crate::extract::BrowserUser;
use crate::module::Module;
use crate::openapi::{Api, Op};
use crate::schemas::ops::ProcessingHealth;
use crate::state::AppState;

/// Nothing to set yet.
#[derive(clap::Args, Debug, Clone)]
#[group(skip)]
pub struct Settings {}

pub const MODULE: Module = Module {
    paths: &[
        ("/upload", ShapeKind::Django),
        ("/scan/", ShapeKind::Django),
        ("/api/processing", ShapeKind::Django),
        ("/api/scan", ShapeKind::Django),
        ("/cbct", ShapeKind::Django),
        ("/panoramic", ShapeKind::Django),
        ("/nifti-metadata", ShapeKind::Django),
    ],
    routes,
    ..Module::named("scans")
};

fn routes(api: Api) -> Api {
    api.get(
        "/api/processing/health",
        health,
        Op::user("001 scans", "Processing health: the server's job backlog and storage").cookie_session().returns::<ProcessingHealth>(),
    )
}

/// The seed's health answer. Until 001's own processing jobs exist (issue 18) the
/// backlog is the server's background model work (inference tasks), and the dataset
/// directories are the blob store every contract's files live in (API-MAP §5).
async fn health(State(state): State<AppState>, _user: BrowserUser) -> ApiResult<Json<ProcessingHealth>, Django> {
    let (pending, processing) = medledger_projections::inference::task_backlog(&state.dbs.read).await?;
    let blobs = state.config.blob_dir().is_dir();
    Ok(Json(ProcessingHealth {
        success: true,
        status: "healthy",
        pending_jobs: pending,
        processing_jobs: processing,
        dataset_dir_exists: blobs,
        dataset_raw_dir_exists: blobs,
        dataset_processed_dir_exists: blobs,
    }))
}
