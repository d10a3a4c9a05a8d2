"""The bundled spectral baseline: what it is built from and what it calls a landslide."""
import json

import numpy as np
import pytest

from conftest import ROOT
from landslide_mapper.core.training.baseline import build_baseline_model
from landslide_mapper.core.geodata.bands import build_channels
from landslide_mapper.core.mapping.model import OnnxModel


def test_bundled_file_is_what_the_code_builds():
    """models/spectral_baseline.onnx must match core.training.baseline (rebuild: build-baseline)."""
    assert (ROOT / "models/spectral_baseline.onnx").read_bytes() == build_baseline_model().SerializeToString()
    card = json.loads((ROOT / "models/spectral_baseline.json").read_text())
    assert card["kind"] == "baseline" and card["bands"] == ["B", "G", "R", "NIR", "NDVI"]


@pytest.mark.parametrize("surface,reflectance,landslide", [
    ("fresh scar", (0.11, 0.13, 0.15, 0.18), True),
    ("forest", (0.03, 0.06, 0.035, 0.30), False),
    ("grass", (0.05, 0.09, 0.06, 0.35), False),
    ("water", (0.06, 0.05, 0.03, 0.02), False),     # dark: negative NDVI but not bright
    ("cloud", (0.62, 0.64, 0.66, 0.68), False),
])
def test_rule(surface, reflectance, landslide):
    model = OnnxModel(ROOT / "models/spectral_baseline.onnx")
    spec = {c: np.full((4, 4), v, np.float32) for c, v in zip(("B", "G", "R", "NIR"), reflectance)}
    x = model.normalise(build_channels(spec, model.metadata.channels))
    p = model.predict(x[None])[0]
    assert ((p >= model.metadata.threshold) == landslide).all(), (surface, p[0, 0])
