"""What a Landslide Mapper ONNX model says about itself: channels, normalisation, tile size,
threshold, layout, lineage and the pixel sizes it was trained on, stored as JSON under
``METADATA_KEY`` in the model's metadata properties. Both the model loader (core/mapping/model.py)
and the checkpoints (core/training/checkpoint.py) read it, so it depends on neither."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..errors import ModelError

METADATA_KEY = "landslide_mapper"


@dataclass
class ModelMetadata:
    name: str
    channels: list[str]                 # model input channels in order, e.g. B,G,R,NIR,NDVI
    mean: list[float]                   # per-channel normalisation: (x - mean) / std,
    std: list[float]                    # x in reflectance units (0..1), NDVI in -1..1
    tile_size: int = 128
    threshold: float = 0.5
    layout: str = "NCHW"                # or "NHWC" (Keras exports)
    size_multiple: int = 1              # tile size must be a multiple of this (pooling depth)
    kind: str = "cascade"               # "cascade" or "baseline"
    description: str = ""
    architecture: str = ""
    lineage: list[dict] = field(default_factory=list)
    pixel_size: list[float] = field(default_factory=list)   # [smallest, largest] m trained on; [] unknown

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelMetadata":
        try:
            data = json.loads(text)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            meta = cls(**known)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{source}: its Landslide Mapper metadata is unreadable ({exc}).") from None
        meta.validate(source)
        return meta

    def validate(self, source: str) -> None:
        n = len(self.channels)
        if n == 0 or len(self.mean) != n or len(self.std) != n:
            raise ModelError(f"{source}: metadata lists {n} channels but {len(self.mean)} means and "
                             f"{len(self.std)} standard deviations.")
        if any(s <= 0 for s in self.std):
            raise ModelError(f"{source}: normalisation standard deviations must be positive.")
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelError(f"{source}: layout must be NCHW or NHWC, not {self.layout!r}.")
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"{source}: threshold must lie in (0, 1), got {self.threshold}.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)
