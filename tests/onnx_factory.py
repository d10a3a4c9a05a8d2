"""Tiny real ONNX models built for tests, with Landslide Mapper metadata."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from landslide_mapper.core.mapping.model import METADATA_KEY, ModelMetadata


def metadata(channels=("B", "G", "R", "NIR", "NDVI"), **kw) -> ModelMetadata:
    base = dict(name="test_model", channels=list(channels), mean=[0.0] * len(channels),
                std=[1.0] * len(channels), tile_size=64, threshold=0.5, kind="test")
    base.update(kw)
    return ModelMetadata(**base)


def save(model, path, meta: ModelMetadata | None):
    if meta is not None:
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_model(path, kernel: int = 3, n_in: int = 5, meta: ModelMetadata | None = None, seed: int = 0,
               bare: bool = False):
    """sigmoid(conv(x)) with a k×k kernel and zero padding: receptive field k×k.

    ``bare``: no Landslide Mapper metadata at all, like a model exported elsewhere."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (1, n_in, kernel, kernel)).astype(np.float32)
    b = np.array([-0.5], np.float32)
    pad = kernel // 2
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["z"], pads=[pad] * 4, name="conv"),
             helper.make_node("Sigmoid", ["z"], ["p"], name="sigmoid")]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in, "H", "W"])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return save(model, path, None if bare else (meta or metadata(tile_size=64)))


def nhwc_identity_mean_model(path, n_in: int = 5, meta: ModelMetadata | None = None):
    """NHWC input, output = sigmoid(mean over channels): checks the layout handling."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[3], keepdims=1, name="mean"),
             helper.make_node("Sigmoid", ["m"], ["p"], name="sigmoid")]
    graph = helper.make_graph(
        nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "H", "W", n_in])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", "H", "W", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return save(model, path, meta if meta is not None else metadata(layout="NHWC"))
