"""A tiny classifier as an ONNX file, built in milliseconds without TensorFlow or training.

Its answer is the softmax of each image's mean red, green and blue: enough
for tests of `imgclf predict` plumbing (files, writers, --sort-into) that do
not care about accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

CLASSES = ("red", "green", "blue")


def write_tiny_onnx(path: Path, size: int = 8) -> Path:
    """Write the model (classes red/green/blue, `size` px RGB, metadata inside) to `path` and return it."""
    import onnx  # the test extras include onnx and onnxruntime
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, size, size, 3])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(CLASSES)])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
             helper.make_node("Softmax", ["mean"], ["probabilities"], axis=1)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [image], [probs], initializer=[axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    meta = model.metadata_props.add()
    meta.key = "imgclf"
    meta.value = json.dumps({"classes": list(CLASSES), "preprocess": {"img_size": size, "color_mode": "rgb"}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
