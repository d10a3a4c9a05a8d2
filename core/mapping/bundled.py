"""Where the models shipped with the plugin live, and which one maps an image by default."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..training.checkpoint import INFO_NAME

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
BASELINE_MODEL = MODELS_DIR / "spectral_baseline.onnx"
CASCADE_CHECKPOINT = MODELS_DIR / "landslide_cascade_v2"
RGB_CHECKPOINT = MODELS_DIR / "landslide_rgb_v1"
AUTO = "auto"                     # the model setting that lets the images choose
RGB_ADVICE = (f"For colour-only (R, G, B) imagery use the bundled RGB checkpoint {RGB_CHECKPOINT.name} "
              "(or leave the model on automatic, which picks it).")


def default_model() -> Path:
    """The model the demo and the CLI use for 4-band imagery when none is named: the bundled
    cascade checkpoint (the spectral baseline only where a checkout lacks it)."""
    if (CASCADE_CHECKPOINT / INFO_NAME).exists():
        return CASCADE_CHECKPOINT
    return BASELINE_MODEL


def has_nir(path: str, bands: str = "auto") -> bool:
    """Whether the raster has a near-infrared band under this band mapping (auto: guessed)."""
    import rasterio
    from rasterio.enums import ColorInterp

    from ..geodata.bands import BandMapping, guess_mapping

    with rasterio.open(path) as src:
        if str(bands).lower() == AUTO:
            mapping = guess_mapping(src.count, src.descriptions, [ci.name for ci in src.colorinterp])
        else:
            mapping = BandMapping.parse(bands)
        nir = dict(mapping.bands).get("NIR")
        return nir is not None and nir <= src.count and src.colorinterp[nir - 1] != ColorInterp.alpha


def auto_model(nir: Sequence[bool]) -> Path:
    """The bundled model for images with (True) or without (False) a NIR band: the cascade
    when every image has one, else the RGB checkpoint (one model for the whole series, so
    the years' inventories compare)."""
    if not all(nir) and (RGB_CHECKPOINT / INFO_NAME).exists():
        return RGB_CHECKPOINT
    return default_model()


def pick_model(model: str | None, years: Sequence, log: Callable[[str], None]) -> str:
    """``model`` itself, or for ``auto`` (or empty) the bundled cascade when every year has a
    NIR band and the bundled RGB checkpoint when one has not (the years of a series are
    mapped with one model, so their inventories compare). ``years``: objects with ``path``
    and ``bands``. Unreadable rasters are left to the mapping's own checks."""
    if model and str(model).strip().lower() != AUTO:
        return str(model)
    flags = []
    for y in years:
        try:
            flags.append(has_nir(y.path, y.bands))
        except Exception:  # noqa: BLE001  (reported with its reason when the year is opened)
            flags.append(True)
    chosen = auto_model(flags)
    if chosen == RGB_CHECKPOINT:
        names = ", ".join(f"{y.year} ({Path(y.path).name})" for y, f in zip(years, flags) if not f)
        log(f"Model: automatic. No near-infrared band in {names}: mapping every year with the bundled RGB "
            f"checkpoint {RGB_CHECKPOINT.name} (R, G, B).")
    else:
        log(f"Model: automatic. Mapping with the bundled {chosen.name}"
            + (" (every image has a near-infrared band)." if all(flags) else
               f"; the RGB checkpoint {RGB_CHECKPOINT.name} is missing from this installation."))
    return str(chosen)
