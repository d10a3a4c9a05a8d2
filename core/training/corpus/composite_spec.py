"""What a composited scene is (core/training/corpus/composite.py makes them): its spec (background, seed,
sensor, size, years, landslide rates, the part of the background it is cut from), the
manifest written beside its files, and the constants both share."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import backgrounds as bgs
from ...errors import InputError

GENERATOR_VERSION = 2     # 2: a part keeps its texture when its landslide enlarges
SCENE_JSON = "scene.json"
TRUTH_NAME = "truth.gpkg"
VISIBLE_RECOVERY = 0.5
RENDER_RECOVERY = 0.95
SENSORS = {  # name: (default pixel size, band names written, dtype)
    "planetscope": (3.0, ("B", "G", "R", "NIR"), "uint16"),
    "rapideye": (5.0, ("B", "G", "R", "RE", "NIR"), "uint16"),
    "visual": (3.0, ("R", "G", "B"), "uint8"),
}
_DESCRIPTIONS = {"B": "Blue", "G": "Green", "R": "Red", "RE": "RedEdge", "NIR": "NIR"}
CLOUD = np.array([0.42, 0.43, 0.44, 0.47], np.float32)
_HAZE = np.array([1.0, 0.75, 0.5, 0.25], np.float32)
_PRE_YEARS = 5                      # history before the first year: old, healing scars


@dataclass(frozen=True)
class CompositeSpec:
    background: str
    seed: int
    sensor: str = "planetscope"
    pixel_size: float | None = None              # None: the sensor's (3 m or 5 m)
    size: tuple[int, int] | None = (1024, 1024)  # output width, height; None: the whole background
    years: tuple[int, ...] = (2016, 2017, 2018, 2019)
    event_year: int | None = None                # None: the second year
    outlines: str = "train"
    event_density: float = 12.0                  # new landslides per km² in the event year
    background_rate: float = 1.0                 # new landslides per km² in every other year
    enlarge_probability: float = 0.12            # per visible landslide and year
    cloud_probability: float = 0.25              # per year after the first
    nodata_probability: float = 0.2              # per year
    max_area_fraction: float = 0.02              # largest landslide, of the scene's area
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)   # part of the background (x0, y0, x1, y1
    #                                            as fractions, y down) the scene is cut from: keeps places apart
    bare_ground: float = 0.0                     # 0: the ground as imaged; 1: its vegetation stripped to arid
    #                                            soil and rock (backgrounds.strip_vegetation), relief kept
    ground_tint: float = 0.0                     # spread (log) of a per-band gain of the ground, drawn once
    #                                            per scene before any scar is burned in (backgrounds.tint)

    def __post_init__(self):
        if self.sensor not in SENSORS:
            raise InputError(f"Unknown sensor {self.sensor!r}: use {', '.join(SENSORS)}.")
        bgs.get(self.background)
        if len(self.years) < 1 or sorted(set(self.years)) != list(self.years):
            raise InputError(f"Years must be distinct and increasing, got {self.years}.")
        if self.event_year is not None and self.event_year not in self.years:
            raise InputError(f"The event year {self.event_year} is not one of {self.years}.")
        x0, y0, x1, y1 = self.region
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise InputError(f"The region must be fractions x0 < x1, y0 < y1 within 0-1, got {self.region}.")
        if not 0.0 <= self.bare_ground <= 1.0:
            raise InputError(f"bare_ground is a fraction within 0-1, got {self.bare_ground}.")
        if not 0.0 <= self.ground_tint <= 1.0:
            raise InputError(f"ground_tint is a log spread within 0-1, got {self.ground_tint}.")

    @property
    def resolved_pixel_size(self) -> float:
        return float(self.pixel_size or SENSORS[self.sensor][0])

    @property
    def resolved_event_year(self) -> int:
        return self.event_year if self.event_year is not None else self.years[min(1, len(self.years) - 1)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["years"] = list(self.years)
        d["size"] = list(self.size) if self.size else None
        d["region"] = list(self.region)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CompositeSpec":
        d = dict(d)
        d["years"] = tuple(d["years"])
        d["size"] = tuple(d["size"]) if d.get("size") else None
        d["region"] = tuple(d.get("region", (0.0, 0.0, 1.0, 1.0)))
        return cls(**d)


@dataclass
class CompositeManifest:
    directory: str
    spec: CompositeSpec
    rasters: dict[int, str]
    truth_path: str
    band_names: list[str]
    pixel_size: float
    texture_scale: float
    counts: dict[int, int] = field(default_factory=dict)
    new_counts: dict[int, int] = field(default_factory=dict)
    generator_version: int = GENERATOR_VERSION

    def to_json(self) -> str:
        return json.dumps({
            "generator_version": self.generator_version, "spec": self.spec.to_dict(),
            "rasters": {str(y): Path(p).name for y, p in self.rasters.items()},
            "truth": Path(self.truth_path).name, "band_names": self.band_names,
            "pixel_size": self.pixel_size, "texture_scale": self.texture_scale,
            "counts": {str(k): v for k, v in self.counts.items()},
            "new_counts": {str(k): v for k, v in self.new_counts.items()}}, indent=2)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CompositeManifest":
        d = Path(directory).absolute()
        data = json.loads((d / SCENE_JSON).read_text())
        return cls(str(d), CompositeSpec.from_dict(data["spec"]),
                   {int(y): str(d / p) for y, p in data["rasters"].items()}, str(d / data["truth"]),
                   list(data["band_names"]), float(data["pixel_size"]), float(data["texture_scale"]),
                   {int(k): v for k, v in data["counts"].items()},
                   {int(k): v for k, v in data["new_counts"].items()}, int(data["generator_version"]))
