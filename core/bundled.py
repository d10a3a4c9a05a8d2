"""Where the models shipped with the plugin live."""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BASELINE_MODEL = MODELS_DIR / "spectral_baseline.onnx"


def default_model() -> Path:
    """The model the demo and the CLI use when none is named."""
    return BASELINE_MODEL
