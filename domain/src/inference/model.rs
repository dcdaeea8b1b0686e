//! Models: an ONNX file in the blob store and the manifest that says how to use it.
//! Registered once, by the operator or at startup for the built-in models.

use serde::{Deserialize, Serialize};

use super::{ModelId, ModelKind, ModelManifest, parse_sha256};
use crate::DomainError;
use crate::aggregate::{Aggregate, DomainEvent};
use crate::events::EventNames;

pub fn stream_id(id: ModelId) -> String {
    format!("model-{id}")
}

pub const MAX_BLOB_KEY_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum ModelEvent {
    ModelRegistered { model_id: ModelId, manifest: ModelManifest, blob_key: String, sha256: String, builtin: bool },
}

impl DomainEvent for ModelEvent {}

#[derive(Debug)]
pub enum ModelCommand {
    /// Registering the same file with the same manifest again changes nothing, so the
    /// built-in models can be registered on every start.
    Register { model_id: ModelId, manifest: ModelManifest, blob_key: String, sha256: String, builtin: bool },
}

#[derive(Debug, Default)]
pub struct Model {
    id: Option<ModelId>,
    manifest: Option<ModelManifest>,
    blob_key: String,
    sha256: String,
    builtin: bool,
}

impl Model {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn id(&self) -> Option<ModelId> {
        self.id
    }

    pub fn manifest(&self) -> Option<&ModelManifest> {
        self.manifest.as_ref()
    }

    pub fn kind(&self) -> Option<ModelKind> {
        self.manifest.as_ref().map(|m| m.kind)
    }

    /// Empty until the model is registered.
    pub fn blob_key(&self) -> &str {
        &self.blob_key
    }

    /// Lower-case hex; empty until the model is registered.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn is_builtin(&self) -> bool {
        self.builtin
    }
}

impl Aggregate for Model {
    type Command = ModelCommand;
    type Event = ModelEvent;
    const CATEGORY: &'static str = "model";

    fn handle(&self, command: ModelCommand) -> Result<Vec<ModelEvent>, DomainError> {
        match command {
            ModelCommand::Register { model_id, manifest, blob_key, sha256, builtin } => {
                let manifest = manifest.validate()?;
                let sha256 = parse_sha256("sha256", &sha256)?;
                let blob_key = blob_key.trim().to_string();
                if blob_key.is_empty() || blob_key.chars().count() > MAX_BLOB_KEY_CHARS || blob_key.chars().any(char::is_control) {
                    return Err(DomainError::invalid("blob_key", format!("1-{MAX_BLOB_KEY_CHARS} characters")));
                }
                if self.exists() {
                    // The file and how it is read are what a model is; where the blob
                    // lives or who registered it may legitimately differ between starts.
                    return if self.sha256 == sha256 && self.manifest.as_ref() == Some(&manifest) {
                        Ok(vec![])
                    } else {
                        Err(DomainError::AlreadyExists("model"))
                    };
                }
                Ok(vec![ModelEvent::ModelRegistered { model_id, manifest, blob_key, sha256, builtin }])
            }
        }
    }

    fn apply(&mut self, event: &ModelEvent) {
        match event {
            ModelEvent::ModelRegistered { model_id, manifest, blob_key, sha256, builtin } => {
                self.id = Some(*model_id);
                self.manifest = Some(manifest.clone());
                self.blob_key = blob_key.clone();
                self.sha256 = sha256.clone();
                self.builtin = *builtin;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::tests::{classifier, detector};

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn register(manifest: ModelManifest, sha256: &str) -> ModelCommand {
        ModelCommand::Register { model_id: 1, manifest, blob_key: format!("models/{sha256}"), sha256: sha256.to_string(), builtin: true }
    }

    fn registered() -> Vec<ModelEvent> {
        Model::default().handle(register(detector(), SHA)).unwrap()
    }

    #[test]
    fn a_model_is_registered_with_its_manifest() {
        let events = registered();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type(), "ModelRegistered");
        let model = Model::from_events(&events);
        assert_eq!(model.id(), Some(1));
        assert_eq!(model.kind(), Some(ModelKind::Detection));
        assert_eq!(model.manifest().map(|m| m.name.as_str()), Some("primitives-grid-tiny"));
        assert_eq!(model.sha256(), SHA);
        assert_eq!(model.blob_key(), format!("models/{SHA}"));
        assert!(model.is_builtin());
    }

    #[test]
    fn the_event_is_adjacently_tagged_and_round_trips() {
        let event = registered().remove(0);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "ModelRegistered");
        assert_eq!(json["data"]["manifest"]["type"], "detection_model");
        assert_eq!(serde_json::from_value::<ModelEvent>(json).unwrap(), event);
    }

    #[test]
    fn registering_the_same_model_again_is_a_no_op() {
        let model = Model::from_events(&registered());
        assert_eq!(model.handle(register(detector(), SHA)), Ok(vec![]));
        assert_eq!(model.handle(register(detector(), &SHA.to_uppercase())), Ok(vec![]), "hex case does not matter");
        let mut untrimmed = detector();
        untrimmed.name = format!(" {} ", untrimmed.name);
        assert_eq!(model.handle(register(untrimmed, SHA)), Ok(vec![]), "compared after validation");
    }

    #[test]
    fn registering_a_different_model_under_a_taken_id_conflicts() {
        let model = Model::from_events(&registered());
        let other_sha = SHA.replace('0', "f");
        assert_eq!(model.handle(register(detector(), &other_sha)), Err(DomainError::AlreadyExists("model")));
        assert_eq!(model.handle(register(classifier(), SHA)), Err(DomainError::AlreadyExists("model")));
    }

    #[test]
    fn invalid_registrations_name_the_field() {
        let field = |command| match Model::default().handle(command) {
            Err(DomainError::InvalidValue { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut bad = detector();
        bad.input.std = [1.0, 0.0, 1.0];
        assert_eq!(field(register(bad, SHA)), "input.std");
        assert_eq!(field(register(detector(), "not-a-hash")), "sha256");
        let ModelCommand::Register { model_id, manifest, sha256, builtin, .. } = register(detector(), SHA);
        assert_eq!(field(ModelCommand::Register { model_id, manifest, blob_key: " ".into(), sha256, builtin }), "blob_key");
    }
}
