//! What a bounded context gives the server: one [`Module`] value per context, listed
//! once in `contexts.rs`; `startup` folds over that list. A context's routes, the error
//! shape of the paths it serves, its read models, its sagas and its background work are
//! declared here, in its own folder, not in shared registries.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use medledger_application::sagas::Saga;
use medledger_domain::events::EventEnum;
use medledger_infrastructure::{Migration, Migrations};
use medledger_projections::{Projection, SelfCheckpointed};

use crate::config::Config;
use crate::error::ShapeKind;
use crate::openapi::Api;
use crate::startup::Core;
use crate::state::AppState;

/// One step of start-up that may wait (open a file, read the store, record an event).
pub type Step<'a> = BoxFuture<'a, anyhow::Result<()>>;

/// A context's sagas, or why they could not be built.
pub type Sagas = anyhow::Result<Vec<Arc<dyn Saga>>>;

pub struct Module {
    pub name: &'static str,
    /// Path prefixes this context serves and the error shape of their contract: what an
    /// error raised before any handler runs (unknown route, wrong method, oversize body)
    /// looks like there. Paths of no module answer in the plain `{"detail"}` shape.
    pub paths: &'static [(&'static str, ShapeKind)],
    /// Its event enums: the codec upcasts their old schemas, and the checks over all of
    /// them (names unique across contexts) run on this list.
    pub events: &'static [EventEnum],
    /// Its read models' tables: SQL files under `migrations/read/<context>/`, applied once
    /// each as the set named after the context (the tables from before contexts had
    /// their own folders are the shared set in `migrations/read/`).
    pub migrations: &'static [Migration],
    /// Builds the context's use cases from the shared ports (`Wiring::provide`), for the
    /// server and the CLI alike.
    pub wire: fn(&mut Wiring) -> anyhow::Result<()>,
    /// What only a serving process holds (an index writer's lock), after `wire`.
    pub open: for<'w, 'c> fn(&'w mut Wiring<'c>) -> Step<'w>,
    /// Mounts the context's routes (each recorded in the OpenAPI document).
    pub routes: fn(Api) -> Api,
    /// Its SQL read models, kept by the runner and rebuilt by `medledger replay`.
    pub read_models: fn(&Contexts) -> Vec<Arc<dyn Projection>>,
    /// Read models that keep their own checkpoint (an index on disk, one in memory).
    pub indexes: fn(&Wiring) -> Vec<Arc<dyn SelfCheckpointed>>,
    /// Its sagas: the work that events cause.
    pub sagas: fn(&Wiring) -> Sagas,
    /// Runs once the runner follows the history, before the first request.
    pub start: for<'a> fn(&'a AppState) -> Step<'a>,
    /// Tasks that run beside the requests while the server serves.
    pub background: fn(&AppState) -> Vec<tokio::task::JoinHandle<()>>,
}

impl Module {
    /// A module with nothing but its name: contexts fill in what they have.
    pub const fn named(name: &'static str) -> Self {
        Self {
            name,
            paths: &[],
            events: &[],
            migrations: &[],
            wire: |_| Ok(()),
            open: nothing,
            routes: |api| api,
            read_models: |_| Vec::new(),
            indexes: |_| Vec::new(),
            sagas: |_| Ok(Vec::new()),
            start: |_| Box::pin(async { Ok(()) }),
            background: |_| Vec::new(),
        }
    }

    /// The context's read-model migrations as one set, named after it.
    pub fn migrations(&self) -> Migrations {
        Migrations::new(self.name, self.migrations)
    }
}

fn nothing<'w>(_: &'w mut Wiring<'_>) -> Step<'w> {
    Box::pin(async { Ok(()) })
}

type Values = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// The state of each context by its type (its use cases, its read model handles),
/// filled at start-up by the modules' `wire` and `open` steps. A handler asks for what
/// its context provided: `state.get::<Catalog>()?`.
#[derive(Clone, Default)]
pub struct Contexts(Arc<Values>);

impl Contexts {
    pub fn get<T: Any + Send + Sync>(&self) -> Result<&T, Unwired> {
        lookup(&self.0)
    }
}

fn lookup<T: Any + Send + Sync>(values: &Values) -> Result<&T, Unwired> {
    values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).ok_or(Unwired(std::any::type_name::<T>()))
}

/// A context's state was asked for but no module provided it: a wiring mistake (its
/// module is missing from `contexts::MODULES`), answered as an internal error.
#[derive(Debug, thiserror::Error)]
#[error("{0} was not provided by any module in contexts::MODULES")]
pub struct Unwired(pub &'static str);

/// What a context's state and subscribers are built from at start-up.
pub struct Wiring<'a> {
    pub config: &'a Config,
    pub core: &'a Core,
    values: Values,
}

impl<'a> Wiring<'a> {
    /// Starts from what `core` already holds.
    pub fn new(config: &'a Config, core: &'a Core) -> Self {
        Self { config, core, values: (*core.contexts.0).clone() }
    }

    /// Makes `value` what `get::<T>()` answers, for this context and its handlers.
    pub fn provide<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Result<&T, Unwired> {
        lookup(&self.values)
    }

    pub fn finish(self) -> Contexts {
        Contexts(Arc::new(self.values))
    }
}
