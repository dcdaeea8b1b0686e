"""Write the hostile ONNX models that tests/it/api/model_safety.rs registers as an admin
(issue 15, item 2) to tests/fixtures/inference/safety-*.onnx.

    python models/make_safety_fixtures.py

Each is a tiny "classification model" that fits models/manifests/scenes.json (input `image`
[1, 3, 128, 128] float, output `probabilities` [., 4]), so the server gets past the manifest
check and meets what the model does:

* safety-external-data.onnx: its 4-float bias, in a Loop's body, is ONNX external data at
  `data/secret.key` (the server's secret, relative to its working directory): the leak the
  review found, where the winning class told the secret's bytes.
* safety-external-data-readable.onnx: the same, reading a file that is there when the tests
  run (their working directory is tests/): the server before issue 15 registered it.
* safety-unknown-op.onnx: a node the runtime does not know; loading it fails with ONNX
  Runtime's own message.
* safety-fails-when-run.onnx: loads, then fails in every run (a Reshape to 7 rows of an
  image whose size 7 does not divide).
* safety-runs-long.onnx: a Loop of 10 million 64x64 matrix products (minutes).
* safety-allocates-too-much.onnx: expands the image 8192 times (1.6 GB of floats) before
  summing it.

Only the `onnx` package is needed (models/requirements.txt); nothing is trained.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "inference")
# What ONNX Runtime 1.31 reads; onnx 1.23 would otherwise stamp a newer IR version.
IR_VERSION = 8
OPSET = 17
# Relative to tests/, the integration tests' working directory; any file of 16 bytes or more.
READABLE = "fixtures/inference/expected.json"


def io(batch: int | str = 1):
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 128, 128])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 4])
    return image, probabilities


def model(name: str, nodes, initializers, batch: int | str = 1, check: bool = True) -> onnx.ModelProto:
    image, probabilities = io(batch)
    graph = helper.make_graph(nodes, name, [image], [probabilities], initializer=initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="medledger-safety-fixtures")
    m.ir_version = IR_VERSION
    if check:
        onnx.checker.check_model(m)
    return m


def image_sum() -> tuple[list, list]:
    """`total` = the image's sum as a [1, 1] tensor."""
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["sum4"], keepdims=1),
        helper.make_node("Reshape", ["sum4", "shape_1x1"], ["total"]),
    ]
    return nodes, [numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "shape_1x1")]


def external_data(location: str) -> onnx.ModelProto:
    """The bias sits in a Loop's body that runs once: ONNX Runtime's optimiser refuses an
    external initializer of the main graph from a model loaded from bytes, but not one in
    a subgraph, and the output then carries the file's first 16 bytes."""
    bias = TensorProto(name="bias", data_type=TensorProto.FLOAT, dims=[1, 4])
    bias.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = bias.external_data.add()
        entry.key, entry.value = key, value
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "bias"], ["v_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4])],
        initializer=[bias],
    )
    nodes, inits = image_sum()
    nodes += [
        helper.make_node("Expand", ["total", "shape_x4"], ["total_x4"]),
        helper.make_node("Loop", ["once", "keep_going", "total_x4"], ["probabilities"], body=body),
    ]
    inits += [
        numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape_x4"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "once"),
        numpy_helper.from_array(np.array(True), "keep_going"),
    ]
    # The checker would look for the file: the model is written as the attacker wrote it.
    return model("external_data", nodes, inits, check=False)


def unknown_op() -> onnx.ModelProto:
    nodes = [helper.make_node("NoSuchOperator", ["image"], ["probabilities"])]
    return model("unknown_op", nodes, [], check=False)


def fails_when_run() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Reshape", ["image", "seven_rows"], ["rows"]),
        helper.make_node("ReduceMean", ["rows"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Expand", ["mean", "shape_x4"], ["probabilities"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([7, -1], dtype=np.int64), "seven_rows"),
        numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape_x4"),
    ]
    # A free batch dimension keeps the failure out of load-time shape inference.
    return model("fails_when_run", nodes, inits, batch="batch")


def runs_long() -> onnx.ModelProto:
    n = 64
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["v_in", "w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["v_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [n, n]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [n, n]),
        ],
        initializer=[numpy_helper.from_array((np.eye(n) * 0.5).astype(np.float32), "w")],
    )
    nodes, inits = image_sum()
    nodes += [
        helper.make_node("Loop", ["trips", "keep_going", "v0"], ["v_end"], body=body),
        helper.make_node("Slice", ["v_end", "starts", "ends"], ["corner"]),
        helper.make_node("Add", ["total", "corner"], ["probabilities"]),
    ]
    inits += [
        numpy_helper.from_array(np.array(10_000_000, dtype=np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "keep_going"),
        numpy_helper.from_array(np.ones((n, n), dtype=np.float32), "v0"),
        numpy_helper.from_array(np.array([0, 0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "ends"),
    ]
    return model("runs_long", nodes, inits)


def allocates_too_much() -> onnx.ModelProto:
    nodes, inits = image_sum()
    nodes = [helper.make_node("Expand", ["image", "copies"], ["many"])] + nodes
    nodes[1].input[0] = "many"
    nodes.append(helper.make_node("Expand", ["total", "shape_x4"], ["probabilities"]))
    inits += [
        numpy_helper.from_array(np.array([8192, 3, 128, 128], dtype=np.int64), "copies"),
        numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape_x4"),
    ]
    return model("allocates_too_much", nodes, inits)


def main() -> None:
    for name, make in (
        ("external-data", lambda: external_data("data/secret.key")),
        ("external-data-readable", lambda: external_data(READABLE)),
        ("unknown-op", unknown_op),
        ("fails-when-run", fails_when_run),
        ("runs-long", runs_long),
        ("allocates-too-much", allocates_too_much),
    ):
        path = os.path.join(OUT, f"safety-{name}.onnx")
        with open(path, "wb") as f:
            f.write(make().SerializeToString())
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
