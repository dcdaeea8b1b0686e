//! What a bounded context gives the server: one [`Module`] value per context, listed
//! once in `contexts.rs`; `startup` folds over that list. A context's routes, the error
//! shape of the paths it serves, its read models, its sagas and its background work are
//! declared here, in its own folder, not in shared registries.

use std::sync::Arc;

use medledger_application::sagas::Saga;
use medledger_projections::catalog::index::CatalogIndex;
use medledger_projections::inference::TaskWatch;
use medledger_projections::{Projection, SelfCheckpointed};

use crate::config::Config;
use crate::error::ShapeKind;
use crate::openapi::Api;
use crate::startup::Core;
use crate::state::AppState;

pub struct Module {
    pub name: &'static str,
    /// Path prefixes this context serves and the error shape of their contract: what an
    /// error raised before any handler runs (unknown route, wrong method, oversize body)
    /// looks like there. Paths of no module answer in the plain `{"detail"}` shape.
    pub paths: &'static [(&'static str, ShapeKind)],
    /// Mounts the context's routes (each recorded in the OpenAPI document).
    pub routes: fn(Api) -> Api,
    /// Its SQL read models, kept by the runner and rebuilt by `medledger replay`.
    pub read_models: fn(&Waiters) -> Vec<Arc<dyn Projection>>,
    /// Read models that keep their own checkpoint (an index on disk, one in memory).
    pub indexes: fn(&Wiring) -> Vec<Arc<dyn SelfCheckpointed>>,
    /// Its sagas: the work that events cause.
    pub sagas: fn(&Wiring) -> anyhow::Result<Vec<Arc<dyn Saga>>>,
    /// Tasks that run beside the requests while the server serves.
    pub background: fn(&AppState) -> Vec<tokio::task::JoinHandle<()>>,
}

impl Module {
    /// A module with nothing but its name: contexts fill in what they have.
    pub const fn named(name: &'static str) -> Self {
        Self {
            name,
            paths: &[],
            routes: |api| api,
            read_models: |_| Vec::new(),
            indexes: |_| Vec::new(),
            sagas: |_| Ok(Vec::new()),
            background: |_| Vec::new(),
        }
    }
}

/// What in-process waiters read models wake (built once per server, shared with the
/// requests that wait).
#[derive(Clone, Default)]
pub struct Waiters {
    /// Requests waiting on one inference task (`?wait=`).
    pub tasks: TaskWatch,
}

/// What a context's subscribers are built from at start-up.
pub struct Wiring<'a> {
    pub config: &'a Config,
    pub core: &'a Core,
    pub catalog_index: &'a Arc<CatalogIndex>,
}
