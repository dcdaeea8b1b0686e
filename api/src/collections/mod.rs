//! Collections over HTTP (contract 000): a dataset's items, and the collections people
//! build of them (requests, builds, downloads).

mod archives;
mod items;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use medledger_application::collections::{CollectionBuildSaga, Collections};
use medledger_application::ports::SystemClock;
use medledger_projections::collections::queries::ItemsReadModel;

use crate::module::{Module, Wiring};
use crate::openapi::Api;
use crate::state::AppState;

pub use settings::Settings;

pub const MODULE: Module = Module {
    events: medledger_domain::collections::EVENTS,
    wire,
    routes,
    read_models: |_| medledger_projections::collections::read_models(),
    sagas: |w| Ok(vec![Arc::new(CollectionBuildSaga::new(w.get::<Collections>()?.clone()))]),
    // What collections choose items from follows the runner once it runs.
    start: |state| {
        Box::pin(async move {
            state.get::<ItemsReadModel>()?.follow(state.progress.clone());
            Ok(())
        })
    },
    background: |state| vec![spawn_expiry_sweeper(state.clone())],
    ..Module::named("collections")
};

fn wire(w: &mut Wiring) -> anyhow::Result<()> {
    let items = ItemsReadModel::new(w.core.dbs.read.clone());
    let collections = Collections::new(
        w.core.ledger.clone(),
        w.core.ids.clone(),
        w.core.blobs.clone(),
        Arc::new(items.clone()),
        Arc::new(SystemClock),
        w.config.contexts.collections.ttl,
    )
    .with_max_items(w.config.contexts.collections.max_items);
    w.provide(items);
    w.provide(collections);
    Ok(())
}

fn routes(api: Api) -> Api {
    archives::routes(items::routes(api))
}

/// Records the expiry of ready collections whose time to live has run out (the
/// collection saga then deletes their archives). Downloads check the expiry time
/// themselves, so a late sweep never serves an expired archive.
fn spawn_expiry_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    let every =
        (state.config.contexts.collections.ttl / 4).to_std().unwrap_or_default().clamp(Duration::from_secs(1), Duration::from_secs(60));
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
            let Ok(collections) = state.get::<Collections>() else { return };
            for id in due {
                if let Err(e) = collections.expire(id).await {
                    tracing::warn!(collection = id, error = %e, "cannot expire collection");
                }
            }
        }
    })
}
