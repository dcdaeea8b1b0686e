//! The models that ship with the server (trained by `models/train.py`; see the model
//! cards in `models/cards/`). Compiled in, so a server needs no model files beside it.

use medledger_application::inference::BuiltinModel;

/// Largest side of an uploaded task image, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Ids 1 and 2 detect primitives, id 3 classifies scenes, as the contract lists them.
pub fn builtins() -> [BuiltinModel; 3] {
    [
        BuiltinModel {
            id: 1,
            manifest_json: include_str!("../../models/manifests/primitives-grid-tiny.json"),
            onnx: include_bytes!("../../models/primitives-grid-tiny.onnx"),
        },
        BuiltinModel {
            id: 2,
            manifest_json: include_str!("../../models/manifests/primitives-large.json"),
            onnx: include_bytes!("../../models/primitives-large.onnx"),
        },
        BuiltinModel {
            id: 3,
            manifest_json: include_str!("../../models/manifests/scenes.json"),
            onnx: include_bytes!("../../models/scenes.onnx"),
        },
    ]
}
