"""The spectral baseline: a per-pixel NDVI/brightness rule written as an ONNX graph.

Fresh landslide scars are bare (low NDVI) and bright, but not as bright as clouds;
the literature used such thresholds before deep learning. Shipping the rule as an ONNX model lets it run through
exactly the same tiled pipeline as the cascade network, as a comparison and as the
model that works before any checkpoint is trained. Its receptive field is one pixel.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..geodata.bands import DEFAULT_CHANNELS
from ..mapping.model import METADATA_KEY, ModelMetadata

# Rule parameters (reflectance units). A pixel is a landslide when NDVI is below
# NDVI_MAX and the visible brightness between BRIGHTNESS_MIN and CLOUD_BRIGHTNESS (fresh
# scars reflect ~0.08-0.2, clouds ~0.5+); the sigmoid slopes make the output a usable
# probability instead of a hard 0/1.
NDVI_MAX = 0.30
NDVI_SLOPE = 25.0
BRIGHTNESS_MIN = 0.075
BRIGHTNESS_SLOPE = 120.0
CLOUD_BRIGHTNESS = 0.30
CLOUD_SLOPE = 40.0

CHANNELS = DEFAULT_CHANNELS          # B, G, R, NIR and NDVI, like the cascade


def baseline_metadata() -> ModelMetadata:
    return ModelMetadata(
        name="spectral_baseline",
        kind="baseline",
        channels=list(CHANNELS),
        mean=[0.0] * len(CHANNELS),
        std=[1.0] * len(CHANNELS),
        tile_size=512,
        threshold=0.5,
        layout="NCHW",
        size_multiple=1,
        architecture=("per-pixel rule: sigmoid(k1*(t_ndvi-NDVI)) * sigmoid(k2*(b-t_b)) * sigmoid(k3*(t_cloud-b)), "
                      "b = mean(B,G,R)"),
        description=(
            "Spectral baseline (not deep learning): bare, bright pixels with low NDVI. "
            f"NDVI < {NDVI_MAX}, mean visible reflectance between {BRIGHTNESS_MIN} and "
            f"{CLOUD_BRIGHTNESS} (brighter is cloud). Confuses bare rock, roads, river gravel "
            "and ploughed fields with landslides; use it as the pre-deep-learning comparison."),
    )


def build_baseline_model():
    """The baseline as an in-memory ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values, dtype=TensorProto.FLOAT):
        return helper.make_tensor(name, dtype, [len(values)], values)

    nodes = [
        helper.make_node("Slice", ["image", "s_ndvi", "e_ndvi", "axis1"], ["ndvi"], name="slice_ndvi"),
        helper.make_node("Slice", ["image", "s_rgb", "e_rgb", "axis1"], ["bgr"], name="slice_bgr"),
        helper.make_node("ReduceMean", ["bgr"], ["brightness"], axes=[1], keepdims=1, name="brightness"),
        helper.make_node("Sub", ["ndvi_max", "ndvi"], ["ndvi_margin"], name="ndvi_margin"),
        helper.make_node("Mul", ["ndvi_margin", "ndvi_slope"], ["ndvi_logit"], name="ndvi_logit"),
        helper.make_node("Sigmoid", ["ndvi_logit"], ["p_bare"], name="p_bare"),
        helper.make_node("Sub", ["brightness", "bright_min"], ["bright_margin"], name="bright_margin"),
        helper.make_node("Mul", ["bright_margin", "bright_slope"], ["bright_logit"], name="bright_logit"),
        helper.make_node("Sigmoid", ["bright_logit"], ["p_bright"], name="p_bright"),
        helper.make_node("Sub", ["cloud_max", "brightness"], ["cloud_margin"], name="cloud_margin"),
        helper.make_node("Mul", ["cloud_margin", "cloud_slope"], ["cloud_logit"], name="cloud_logit"),
        helper.make_node("Sigmoid", ["cloud_logit"], ["p_not_cloud"], name="p_not_cloud"),
        helper.make_node("Mul", ["p_bare", "p_bright"], ["p_bare_bright"], name="p_bare_bright"),
        helper.make_node("Mul", ["p_bare_bright", "p_not_cloud"], ["probability"], name="probability"),
    ]
    inits = [
        const("s_ndvi", [4], TensorProto.INT64), const("e_ndvi", [5], TensorProto.INT64),
        const("s_rgb", [0], TensorProto.INT64), const("e_rgb", [3], TensorProto.INT64),
        const("axis1", [1], TensorProto.INT64),
        const("ndvi_max", [NDVI_MAX]), const("ndvi_slope", [NDVI_SLOPE]),
        const("bright_min", [BRIGHTNESS_MIN]), const("bright_slope", [BRIGHTNESS_SLOPE]),
        const("cloud_max", [CLOUD_BRIGHTNESS]), const("cloud_slope", [CLOUD_SLOPE]),
    ]
    graph = helper.make_graph(
        nodes, "spectral_baseline",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", len(CHANNELS), "H", "W"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="landslide_mapper")
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: baseline_metadata().to_json()})
    onnx.checker.check_model(model)
    return model


def model_card(meta: ModelMetadata) -> dict:
    """The sidecar card the dock shows without loading ONNX Runtime in QGIS."""
    return {
        "name": meta.name, "kind": meta.kind, "description": meta.description,
        "bands": meta.channels, "tile_size": meta.tile_size, "threshold": meta.threshold,
        "architecture": meta.architecture, "lineage": meta.lineage,
    }


def write_baseline(path: str | Path) -> Path:
    """Write the baseline ONNX file and its ``.json`` model card next to it."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_baseline_model(), str(path))
    card = model_card(baseline_metadata())
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path
