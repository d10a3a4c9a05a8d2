"""Job specifications: plain, JSON-serialisable dataclasses.

The dock, the Processing algorithms and the command line all build these; the runner
executes them, in the QGIS process or in a worker process fed the JSON on stdin.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from .errors import InputError


@dataclass
class YearInput:
    year: int
    path: str
    bands: str = "auto"                      # preset name, "auto", or "B=3,G=2,R=1,NIR=4"
    reflectance_scale: float | None = None   # value of reflectance 1.0; None: from the dtype


@dataclass
class InferenceJob:
    """Map landslides in one raster per year with one model."""

    kind: ClassVar[str] = "infer"
    years: list[YearInput]
    model: str
    output_dir: str
    run_name: str | None = None
    tile_size: int | None = None             # None: the model's own tile size
    overlap: int = 32
    batch_size: int = 8
    threshold: float | None = None           # None: the model's own threshold
    min_area_m2: float = 200.0
    device: str = "auto"

    def validate(self) -> None:
        _check_types(self, {"overlap": int, "batch_size": int, "min_area_m2": (int, float), "device": str,
                            "model": str, "output_dir": str, "tile_size": (int, type(None)),
                            "threshold": (int, float, type(None)), "run_name": (str, type(None))})
        for y in self.years:
            _check_types(y, {"year": int, "path": str, "bands": str,
                             "reflectance_scale": (int, float, type(None))})
        if not self.years:
            raise InputError("No years given: add at least one YEAR=RASTER pair.")
        seen: dict[int, str] = {}
        for y in self.years:
            if y.year in seen:
                raise InputError(f"Year {y.year} is given twice ({seen[y.year]} and {y.path}).")
            seen[y.year] = y.path
        if self.tile_size is not None and self.tile_size < 16:
            raise InputError(f"Tile size must be at least 16 pixels, got {self.tile_size}.")
        if self.overlap < 0:
            raise InputError(f"Overlap must not be negative, got {self.overlap}.")
        if self.batch_size < 1:
            raise InputError(f"Batch size must be at least 1, got {self.batch_size}.")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise InputError(f"Threshold must lie strictly between 0 and 1, got {self.threshold}.")
        if self.min_area_m2 < 0:
            raise InputError(f"Minimum area must not be negative, got {self.min_area_m2}.")
        if self.device.lower() not in ("auto", "cpu", "gpu", "cuda"):
            raise InputError(f"Device must be auto, cpu or gpu, not {self.device!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InferenceJob":
        data = {k: v for k, v in data.items() if k != "kind"}
        _check_keys(cls, data)
        years = []
        for y in data.pop("years", []):
            _check_keys(YearInput, y)
            years.append(YearInput(**y))
        return cls(years=years, **data)


JOB_TYPES: dict[str, type] = {InferenceJob.kind: InferenceJob}


def _check_types(obj, types: dict) -> None:
    for name, kind in types.items():
        value = getattr(obj, name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise InputError(f"{type(obj).__name__}.{name} has the wrong type: {value!r}.")


def _check_keys(cls, data: dict) -> None:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise InputError(f"Unknown field(s) in {cls.__name__}: {', '.join(sorted(unknown))}.")


def job_from_json(text: str):
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"The job specification is not valid JSON: {exc}.") from None
    if not isinstance(data, dict) or data.get("kind") not in JOB_TYPES:
        raise InputError(f"The job specification needs a 'kind' among {', '.join(JOB_TYPES)}.")
    try:
        return JOB_TYPES[data["kind"]].from_dict(data)
    except TypeError as exc:
        raise InputError(f"Incomplete job specification: {exc}.") from None


def job_to_json(job) -> str:
    return json.dumps(job.to_dict(), indent=2)
