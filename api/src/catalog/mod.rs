//! The catalog over HTTP (contract 000): datasets, their vocabulary, and the search.

mod datasets;
mod search;

use std::sync::Arc;

use crate::module::Module;
use crate::openapi::Api;

pub const MODULE: Module = Module {
    routes,
    read_models: |_| medledger_projections::catalog::read_models(),
    indexes: |w| vec![Arc::new(w.catalog_index.clone())],
    ..Module::named("catalog")
};

fn routes(api: Api) -> Api {
    search::routes(datasets::routes(api))
}
