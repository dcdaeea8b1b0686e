//! The catalog over HTTP (contract 000): datasets, their vocabulary, and the search.

mod datasets;
mod search;
mod settings;

use std::sync::Arc;

use medledger_application::catalog::Catalog;
use medledger_infrastructure::private_files;
use medledger_projections::catalog::index::CatalogIndex;

use crate::module::{Module, Step, Wiring};
use crate::openapi::Api;

pub use settings::Settings;

pub const MODULE: Module = Module {
    events: medledger_domain::catalog::EVENTS,
    wire: |w| {
        w.provide(Catalog::new(w.core.ledger.clone(), w.core.ids.clone()));
        Ok(())
    },
    open: open_index,
    routes,
    read_models: |_| medledger_projections::catalog::read_models(),
    indexes: |w| w.get::<Arc<CatalogIndex>>().map(|index| vec![Arc::new(index.clone()) as _]).unwrap_or_default(),
    ..Module::named("catalog")
};

fn routes(api: Api) -> Api {
    search::routes(datasets::routes(api))
}

/// The full-text index: one per server, holding its writer's lock while it serves (so
/// only a serving process opens it; `medledger replay` opens it itself).
fn open_index<'w>(w: &'w mut Wiring<'_>) -> Step<'w> {
    Box::pin(async move {
        let dir = w.config.catalog_index_dir();
        private_files::create_dir_all(&dir)?;
        let index = CatalogIndex::open_for(&dir, &*w.core.dbs.store).await?;
        w.provide(index);
        Ok(())
    })
}
