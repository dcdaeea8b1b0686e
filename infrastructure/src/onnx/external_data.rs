//! Refuses an ONNX model that keeps tensor data outside its own bytes, before ONNX Runtime
//! parses it.
//!
//! ONNX "external data" names a file (and an offset and length in it) from which the
//! runtime fills a tensor. For a model loaded from memory, ONNX Runtime resolves the name
//! against the server's working directory: a model an admin uploaded read `data/secret.key`
//! that way, and its outputs gave the secret away (issue 15). No model this server runs
//! needs external data (an upload is one file), so any is refused, wherever a tensor can
//! sit: the graph's initializers (dense and sparse), node attributes, the subgraphs of
//! If/Loop/Scan at any depth, model-local functions and training information.
//!
//! The walk reads the protobuf wire format itself (field numbers from onnx/onnx.proto, ONNX
//! 1.23): a few kilobytes of code instead of generated bindings for all of ONNX. It visits
//! every occurrence of every message field that can hold a tensor, so a field repeated to be
//! merged by the parser is seen too. Anything it cannot read as protobuf is refused (the
//! runtime would refuse it as well), and the nesting depth is bounded, so hostile bytes
//! cost one linear pass and never a panic.

/// Why a model's bytes are refused before they reach ONNX Runtime. The messages are for
/// the admin who uploaded the model; they name nothing of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModelBytesError {
    #[error(
        "The model keeps tensor data in other files (ONNX external data); only self-contained models are accepted: \
         save it with all its data in the .onnx file."
    )]
    ExternalData,
    #[error("The file is not an ONNX model.")]
    NotOnnx,
    #[error("The model nests subgraphs more than {MAX_DEPTH} messages deep.")]
    TooDeep,
}

/// Deepest nesting of messages accepted: protobuf's own default limit, which ONNX
/// Runtime's parser also applies. Each If/Loop/Scan level costs three (graph, node,
/// attribute), so this leaves some thirty levels of subgraphs.
pub const MAX_DEPTH: usize = 100;

/// Checks that no tensor in `bytes`, a serialized `ModelProto`, refers to external data.
pub fn check_self_contained(bytes: &[u8]) -> Result<(), ModelBytesError> {
    walk(bytes, Message::Model, 1)
}

/// The messages on the way to a `TensorProto`; every other message is skipped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Model,
    TrainingInfo,
    Function,
    Graph,
    Node,
    Attribute,
    SparseTensor,
    Tensor,
}

/// The message a length-delimited field of `parent` holds, if it is one on the way to a
/// tensor (onnx.proto's field numbers).
fn child(parent: Message, field: u32) -> Option<Message> {
    use Message::*;
    Some(match (parent, field) {
        // ModelProto: graph = 7, training_info = 20, functions = 25.
        (Model, 7) => Graph,
        (Model, 20) => TrainingInfo,
        (Model, 25) => Function,
        // TrainingInfoProto: initialization = 1, algorithm = 2.
        (TrainingInfo, 1 | 2) => Graph,
        // FunctionProto: node = 7, attribute_proto = 11 (attribute defaults).
        (Function, 7) => Node,
        (Function, 11) => Attribute,
        // GraphProto: node = 1, initializer = 5, sparse_initializer = 15.
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => SparseTensor,
        // NodeProto: attribute = 5.
        (Node, 5) => Attribute,
        // AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22,
        // sparse_tensors = 23.
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => SparseTensor,
        // SparseTensorProto: values = 1, indices = 2.
        (SparseTensor, 1 | 2) => Tensor,
        _ => return None,
    })
}

/// TensorProto: external_data = 13 (entries naming the file), data_location = 14
/// (1 = EXTERNAL).
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;

fn walk(bytes: &[u8], message: Message, depth: usize) -> Result<(), ModelBytesError> {
    if depth > MAX_DEPTH {
        return Err(ModelBytesError::TooDeep);
    }
    let mut fields = Fields { bytes, at: 0 };
    while let Some((number, value)) = fields.next_field()? {
        if message == Message::Tensor {
            match (number, value) {
                (TENSOR_EXTERNAL_DATA, _) => return Err(ModelBytesError::ExternalData),
                // Only DEFAULT (0) keeps the data inside; any other value, or the field in
                // an unexpected encoding, is not something to guess about.
                (TENSOR_DATA_LOCATION, Value::Varint(0)) => {}
                (TENSOR_DATA_LOCATION, _) => return Err(ModelBytesError::ExternalData),
                _ => {}
            }
            continue;
        }
        // A message field in another wire type is an unknown field to protobuf, which
        // the runtime never reads as a tensor: only length-delimited ones are followed.
        if let (Value::Bytes(inner), Some(kind)) = (value, child(message, number)) {
            walk(inner, kind, depth + 1)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32- and 64-bit values: nothing here needs them.
    Fixed,
}

/// The fields of one message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, ModelBytesError> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        // Protobuf reads a key as 32 bits, and field 0 does not exist.
        let key = u32::try_from(key).map_err(|_| ModelBytesError::NotOnnx)?;
        let number = key >> 3;
        if number == 0 {
            return Err(ModelBytesError::NotOnnx);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| ModelBytesError::NotOnnx)?;
                Value::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            // Groups (3, 4) are not used by ONNX; 6 and 7 do not exist.
            _ => return Err(ModelBytesError::NotOnnx),
        };
        Ok(Some((number, value)))
    }

    /// A base-128 varint of at most ten bytes that fits 64 bits.
    fn varint(&mut self) -> Result<u64, ModelBytesError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.bytes.get(self.at).ok_or(ModelBytesError::NotOnnx)?;
            self.at += 1;
            let bits = u64::from(byte & 0x7F);
            if i == 9 && bits > 1 {
                return Err(ModelBytesError::NotOnnx);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ModelBytesError::NotOnnx)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], ModelBytesError> {
        let end = self.at.checked_add(length).filter(|end| *end <= self.bytes.len()).ok_or(ModelBytesError::NotOnnx)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf encoding, enough to build the messages the tests need.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn field(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn int_field(number: u32, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3, &mut out);
        varint(value, &mut out);
        out
    }

    fn message(fields: &[Vec<u8>]) -> Vec<u8> {
        fields.concat()
    }

    /// A float tensor [1, 4] with its data inside.
    fn tensor(name: &str) -> Vec<u8> {
        message(&[int_field(1, 1), int_field(1, 4), int_field(2, 1), field(8, name.as_bytes()), field(9, &[0; 16])])
    }

    /// The attacker's tensor: data at `location` in a file.
    fn external_tensor(location: &str) -> Vec<u8> {
        let entry = |k: &str, v: &str| field(13, &message(&[field(1, k.as_bytes()), field(2, v.as_bytes())]));
        message(&[
            int_field(1, 1),
            int_field(1, 4),
            int_field(2, 1),
            field(8, b"bias"),
            entry("location", location),
            entry("offset", "0"),
            entry("length", "16"),
            int_field(14, 1),
        ])
    }

    fn node(op: &str, attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut fields = vec![field(1, b"x"), field(2, b"y"), field(4, op.as_bytes())];
        fields.extend(attributes.iter().map(|a| field(5, a)));
        message(&fields)
    }

    fn graph(nodes: &[Vec<u8>], initializers: &[Vec<u8>]) -> Vec<u8> {
        let mut fields: Vec<Vec<u8>> = nodes.iter().map(|n| field(1, n)).collect();
        fields.push(field(2, b"main"));
        fields.extend(initializers.iter().map(|t| field(5, t)));
        message(&fields)
    }

    fn model(graph: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
        let mut fields = vec![int_field(1, 8), field(2, b"test"), field(7, graph), field(8, &message(&[int_field(2, 17)]))];
        fields.extend_from_slice(extra);
        message(&fields)
    }

    /// An attribute `body` holding `graph` (type GRAPH = 5).
    fn graph_attribute(graph: &[u8]) -> Vec<u8> {
        message(&[field(1, b"body"), field(6, graph), int_field(20, 5)])
    }

    #[test]
    fn a_self_contained_model_passes() {
        let loop_body = graph(&[node("Identity", &[])], &[tensor("w")]);
        let bytes = model(&graph(&[node("Loop", &[graph_attribute(&loop_body)])], &[tensor("bias")]), &[]);
        assert_eq!(check_self_contained(&bytes), Ok(()));
        // Explicitly DEFAULT is inside too.
        let default = [tensor("b"), int_field(14, 0)].concat();
        assert_eq!(check_self_contained(&model(&graph(&[], &[default]), &[])), Ok(()));
    }

    #[test]
    fn the_committed_models_pass() {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
        for name in ["scenes", "primitives-large", "primitives-grid-tiny"] {
            let bytes = std::fs::read(format!("{models}/{name}.onnx")).unwrap();
            assert_eq!(check_self_contained(&bytes), Ok(()), "{name}");
        }
    }

    #[test]
    fn external_data_in_the_main_graph_is_refused() {
        let bytes = model(&graph(&[], &[tensor("ok"), external_tensor("data/secret.key")]), &[]);
        assert_eq!(check_self_contained(&bytes), Err(ModelBytesError::ExternalData));
        // Either half of the marking is enough.
        let location_only = [tensor("b"), int_field(14, 1)].concat();
        assert_eq!(check_self_contained(&model(&graph(&[], &[location_only]), &[])), Err(ModelBytesError::ExternalData));
        let entries_only = [tensor("b"), field(13, &field(1, b"location"))].concat();
        assert_eq!(check_self_contained(&model(&graph(&[], &[entries_only]), &[])), Err(ModelBytesError::ExternalData));
        let odd_location = [tensor("b"), int_field(14, 7)].concat();
        assert_eq!(check_self_contained(&model(&graph(&[], &[odd_location]), &[])), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn external_data_in_a_node_attribute_is_refused() {
        // Constant's `value` (t = 5) and a list of tensors (tensors = 10).
        let value = message(&[field(1, b"value"), field(5, &external_tensor("x")), int_field(20, 4)]);
        assert_eq!(check_self_contained(&model(&graph(&[node("Constant", &[value])], &[]), &[])), Err(ModelBytesError::ExternalData));
        let list = message(&[field(1, b"values"), field(10, &tensor("a")), field(10, &external_tensor("x")), int_field(20, 9)]);
        assert_eq!(check_self_contained(&model(&graph(&[node("Op", &[list])], &[]), &[])), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn external_data_in_a_subgraph_is_refused_at_any_depth() {
        let mut inner = graph(&[], &[external_tensor("data/secret.key")]);
        for _ in 0..10 {
            inner = graph(&[node("If", &[graph_attribute(&inner)])], &[]);
        }
        assert_eq!(check_self_contained(&model(&inner, &[])), Err(ModelBytesError::ExternalData));
        // In a list of graphs (graphs = 11).
        let graphs = message(&[field(1, b"branches"), field(11, &graph(&[], &[])), field(11, &graph(&[], &[external_tensor("x")]))]);
        assert_eq!(check_self_contained(&model(&graph(&[node("Op", &[graphs])], &[]), &[])), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn external_data_in_a_sparse_tensor_is_refused() {
        let sparse = |values: Vec<u8>, indices: Vec<u8>| message(&[field(1, &values), field(2, &indices), int_field(3, 4)]);
        let in_values = sparse(external_tensor("x"), tensor("i"));
        let in_indices = sparse(tensor("v"), external_tensor("x"));
        for s in [in_values, in_indices] {
            let as_initializer = model(&message(&[field(2, b"main"), field(15, &s)]), &[]);
            assert_eq!(check_self_contained(&as_initializer), Err(ModelBytesError::ExternalData));
            for number in [22, 23] {
                let attribute = message(&[field(1, b"s"), field(number, &s)]);
                let bytes = model(&graph(&[node("Constant", &[attribute])], &[]), &[]);
                assert_eq!(check_self_contained(&bytes), Err(ModelBytesError::ExternalData), "attribute field {number}");
            }
        }
    }

    #[test]
    fn external_data_in_a_function_is_refused() {
        let constant = message(&[field(1, b"value"), field(5, &external_tensor("x"))]);
        let function = message(&[field(1, b"f"), field(7, &node("Constant", std::slice::from_ref(&constant))), field(10, b"local")]);
        let bytes = model(&graph(&[], &[]), &[field(25, &function)]);
        assert_eq!(check_self_contained(&bytes), Err(ModelBytesError::ExternalData));
        // A function attribute's default value (attribute_proto = 11).
        let default = message(&[field(1, b"f"), field(11, &constant)]);
        assert_eq!(check_self_contained(&model(&graph(&[], &[]), &[field(25, &default)])), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn external_data_in_training_information_is_refused() {
        let training = message(&[field(2, &graph(&[], &[external_tensor("x")]))]);
        assert_eq!(check_self_contained(&model(&graph(&[], &[]), &[field(20, &training)])), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn a_graph_repeated_to_be_merged_is_checked_every_time() {
        let bytes = model(&graph(&[], &[tensor("a")]), &[field(7, &graph(&[], &[external_tensor("x")]))]);
        assert_eq!(check_self_contained(&bytes), Err(ModelBytesError::ExternalData));
    }

    #[test]
    fn fields_that_cannot_hold_tensors_are_not_read_as_such() {
        // A doc string (graph field 10) whose text looks like an external tensor.
        let doc = field(10, &field(5, &external_tensor("x")));
        assert_eq!(check_self_contained(&model(&[graph(&[], &[]), doc].concat(), &[])), Ok(()));
        // The graph field as a varint is an unknown field to protobuf.
        assert_eq!(check_self_contained(&[int_field(1, 8), int_field(7, 3)].concat()), Ok(()));
    }

    #[test]
    fn bytes_that_are_not_protobuf_are_refused_without_panicking() {
        let good = model(&graph(&[node("Relu", &[])], &[tensor("w")]), &[]);
        for cut in 1..good.len() {
            // Every truncation either still parses (a prefix ending between fields) or is
            // refused; none panics.
            let _ = check_self_contained(&good[..cut]);
        }
        assert_eq!(check_self_contained(&good[..good.len() - 3]), Err(ModelBytesError::NotOnnx));
        for garbage in [
            &b"not an onnx model"[..],
            &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], // a length past the end
            &[0x3A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // an eleven-byte varint
            &[0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], // a length over 64 bits
            &[0x00, 0x01],                         // field 0
            &[0x0B],                               // a group
            &[0x08],                               // a key without its value
        ] {
            assert_eq!(check_self_contained(garbage), Err(ModelBytesError::NotOnnx), "{garbage:?}");
        }
        // Random bytes: refused or passed, quickly, never a panic.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = check_self_contained(&bytes);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        // Graph → node → attribute → graph, far deeper than any real model.
        let mut inner = graph(&[], &[]);
        for _ in 0..MAX_DEPTH {
            inner = graph(&[node("If", &[graph_attribute(&inner)])], &[]);
        }
        assert_eq!(check_self_contained(&model(&inner, &[])), Err(ModelBytesError::TooDeep));
        // Thirty levels of If, as deep as a real model could go, pass.
        let mut ok = graph(&[], &[]);
        for _ in 0..30 {
            ok = graph(&[node("If", &[graph_attribute(&ok)])], &[]);
        }
        assert_eq!(check_self_contained(&model(&ok, &[])), Ok(()));
    }
}
