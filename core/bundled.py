"""Where the models shipped with the plugin live."""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BASELINE_MODEL = MODELS_DIR / "spectral_baseline.onnx"
CASCADE_CHECKPOINT = MODELS_DIR / "landslide_cascade_v1"


def default_model() -> Path:
    """The model the demo and the CLI use when none is named: the bundled cascade
    checkpoint (the spectral baseline only where a checkout lacks it)."""
    if (CASCADE_CHECKPOINT / "checkpoint.json").exists():
        return CASCADE_CHECKPOINT
    return BASELINE_MODEL
