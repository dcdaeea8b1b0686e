//! Collections over HTTP (contract 000): a dataset's items, and the collections people
//! build of them (requests, builds, downloads).

mod collections;
mod items;

use std::sync::Arc;
use std::time::Duration;

use medledger_application::collections::CollectionBuildSaga;

use crate::module::Module;
use crate::openapi::Api;
use crate::state::AppState;

pub const MODULE: Module = Module {
    routes,
    read_models: |_| medledger_projections::collections::read_models(),
    sagas: |w| Ok(vec![Arc::new(CollectionBuildSaga::new(w.core.collections.clone()))]),
    background: |state| vec![spawn_expiry_sweeper(state.clone())],
    ..Module::named("collections")
};

fn routes(api: Api) -> Api {
    collections::routes(items::routes(api))
}

/// Records the expiry of ready collections whose time to live has run out (the
/// collection saga then deletes their archives). Downloads check the expiry time
/// themselves, so a late sweep never serves an expired archive.
fn spawn_expiry_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    let every = (state.config.collection_ttl / 4).to_std().unwrap_or_default().clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let due = match medledger_projections::collections::queries::expired_collections(&state.dbs.read, &now).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for expired collections");
                    continue;
                }
            };
            for id in due {
                if let Err(e) = state.collections.expire(id).await {
                    tracing::warn!(collection = id, error = %e, "cannot expire collection");
                }
            }
        }
    })
}
