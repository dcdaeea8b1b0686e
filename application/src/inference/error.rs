/// Inference's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// A task named a model id that is no model of the kind it needs.
    #[error("no such model of that kind")]
    NoSuchModel,
    /// The engine would not load a model sent for registration; its sentence is fit for
    /// the admin to read (see `ports::InferenceEngine`).
    #[error("the model was refused: {0}")]
    ModelRefused(super::EngineError),
}
