"""Give an exported model a dynamic batch dimension, so that the server can run several
queued images in one session run (decision #52).

`torch.onnx.export` traces with one image, which fixes the batch at 1: the input and output
shapes say 1, and a `Reshape` whose target starts with that 1 keeps it as a constant. This
rewrites those three places and nothing else; a batch of one computes exactly what the
traced graph did (`python models/batch_dimension.py --check` compares the two).

    python models/batch_dimension.py models/*.onnx
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    reshape_targets = {n.input[1] for n in graph.node if n.op_type == "Reshape"}
    for node in graph.node:
        if node.op_type != "Constant" or node.output[0] not in reshape_targets:
            continue
        target = numpy_helper.to_array(node.attribute[0].t).copy()
        if target.ndim == 1 and len(target) > 0 and target[0] == 1:
            # 0 in a Reshape target copies that dimension from the input: the batch.
            target[0] = 0
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(target))
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    # Inferred intermediate shapes still say 1; ONNX Runtime infers them again.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def check(path: str) -> None:
    """Batch of four distinct images == four runs of one, to the last bit."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((4, 3, 128, 128), dtype=np.float32)
    batched = session.run(None, {"image": images})[0]
    single = np.concatenate([session.run(None, {"image": images[i:i + 1]})[0] for i in range(4)])
    diff = float(np.abs(batched - single).max())
    print(f"{path}: output {list(batched.shape)}, max |batch - single| = {diff:.2e}")
    if diff > 1e-5:
        sys.exit(f"{path}: a batch does not compute what single runs do")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--check", action="store_true", help="only compare batched and single runs")
    a = ap.parse_args()
    for path in a.models:
        if not a.check:
            onnx.save(make_batch_dynamic(onnx.load(path)), path)
        check(path)


if __name__ == "__main__":
    main()
