//! Inference over HTTP (contract 004): tasks and models.

mod routes;

use std::sync::Arc;

use medledger_application::inference::InferenceSaga;

use crate::module::Module;

pub const MODULE: Module = Module {
    routes: routes::routes,
    read_models: |waiters| medledger_projections::inference::read_models(waiters.tasks.clone()),
    sagas: |w| Ok(vec![Arc::new(InferenceSaga::new(w.core.inference.clone(), w.config.inference_queue))]),
    ..Module::named("inference")
};
