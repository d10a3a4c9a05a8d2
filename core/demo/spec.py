"""What a scene is: its spec (size, sensor, years, landslide statistics, seed), the manifest
written beside its rasters, and the constants the generator shares."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError

GENERATOR_VERSION = 1
SCENE_JSON = "scene.json"
TRUTH_NAME = "truth.gpkg"
VISIBLE_RECOVERY = 0.5  # a scar part is truth while its recovery fraction is below this
RENDER_RECOVERY = 0.95  # beyond this a scar is indistinguishable from vegetation
DEFAULT_BLOCK = 1024

ProgressFn = Callable[[float, str], None]

# rasterio's rasterize is not quite thread-safe (it emits spurious georeferencing
# warnings when called concurrently); it is a small part of a block's time, so serialise it
_RASTERIZE_LOCK = threading.Lock()


def _rasterize(*args, **kwargs) -> np.ndarray:
    from rasterio.features import rasterize

    with _RASTERIZE_LOCK:
        return rasterize(*args, **kwargs)


@dataclass
class SceneSpec:
    """Everything that determines a scene: equal specs give identical pixels and polygons
    (and byte-identical GeoTIFFs when written with the same block size)."""

    size: int = 512
    pixel_size: float = 3.0
    years: tuple[int, ...] = (2016, 2017, 2018, 2019)
    event_year: int = 2017
    seed: int = 0
    epsg: int = 32645
    origin: tuple[float, float] = (300000.0, 3100000.0)
    powerlaw_alpha: float = 2.3
    min_landslide_area: float = 300.0
    max_landslide_area: float = 200000.0  # also capped at 5 % of the scene area
    landslide_density: float = 10.0  # event-year landslides per km²
    background_rate: float = 0.06  # new landslides in other years, as a fraction of the event density
    enlarge_probability: float = 0.08  # per visible landslide and year
    sensor: str = "auto"  # "planetscope" | "rapideye" | "auto" (3 m → planetscope, 5 m → rapideye)
    relief: float = 800.0  # metres; scales the fractal DEM
    hurst: float = 0.8
    sun_azimuth: float = 135.0  # degrees clockwise from north
    sun_elevation: float = 50.0
    cloud_years: tuple[int, ...] | None = None  # None: the last year (if more than one year)
    nodata_years: tuple[int, ...] | None = None  # None: the second-to-last year (if > 2 years)
    cloud_cover: float = 0.06  # approximate cloudy fraction in a cloud year

    def __post_init__(self):
        self.years = tuple(int(y) for y in self.years)
        self.origin = (float(self.origin[0]), float(self.origin[1]))
        if self.cloud_years is not None:
            self.cloud_years = tuple(int(y) for y in self.cloud_years)
        if self.nodata_years is not None:
            self.nodata_years = tuple(int(y) for y in self.nodata_years)

    # -- derived values -------------------------------------------------------
    def validate(self) -> None:
        if int(self.size) < 16:
            raise InputError(f"Demo scene size must be at least 16 pixels, not {self.size}.")
        if not self.pixel_size > 0:
            raise InputError(f"Demo scene pixel size must be positive, not {self.pixel_size}.")
        if not self.years or list(self.years) != sorted(set(self.years)):
            raise InputError(f"Demo scene years must be increasing and distinct, not {self.years}.")
        if self.powerlaw_alpha <= 1.0:
            raise InputError(f"The power-law exponent must be > 1, not {self.powerlaw_alpha}.")
        if not self.min_landslide_area > 0 or self.landslide_density < 0 or self.background_rate < 0:
            raise InputError("Landslide area and densities must be positive.")
        if not 0 <= self.cloud_cover <= 0.9:
            raise InputError(f"The cloud cover must be between 0 and 0.9, not {self.cloud_cover}.")
        if self.seed < 0:
            raise InputError(f"The demo scene seed must be >= 0, not {self.seed}.")
        if not 0 < self.sun_elevation <= 90:
            raise InputError(f"The sun elevation must be in (0, 90] degrees, not {self.sun_elevation}.")
        if self.resolved_sensor() not in ("planetscope", "rapideye"):
            raise InputError(f"Unknown sensor {self.sensor!r}; use planetscope, rapideye or auto.")

    def resolved_sensor(self) -> str:
        if self.sensor == "auto":
            return "rapideye" if self.pixel_size >= 4.0 else "planetscope"
        return self.sensor

    def band_names(self) -> list[str]:
        return ["B", "G", "R", "RE", "NIR"] if self.resolved_sensor() == "rapideye" else ["B", "G", "R", "NIR"]

    def resolved_cloud_years(self) -> tuple[int, ...]:
        if self.cloud_years is not None:
            return tuple(self.cloud_years)
        return (self.years[-1],) if len(self.years) > 1 else ()

    def resolved_nodata_years(self) -> tuple[int, ...]:
        if self.nodata_years is not None:
            return tuple(self.nodata_years)
        return (self.years[-2],) if len(self.years) > 2 else ()

    @property
    def extent(self) -> tuple[float, float, float, float]:
        ox, oy = self.origin
        side = self.size * self.pixel_size
        return ox, oy - side, ox + side, oy

    @property
    def area_km2(self) -> float:
        return (self.size * self.pixel_size) ** 2 / 1e6

    def effective_max_area(self) -> float:
        cap = min(self.max_landslide_area, 0.05 * (self.size * self.pixel_size) ** 2)
        return float(max(cap, 2.0 * self.min_landslide_area))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SceneSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class SceneManifest:
    """Where a generated scene's files are, and what is true about it."""

    directory: str
    spec: SceneSpec
    rasters: dict[int, str]
    truth_path: str
    band_names: list[str]
    true_powerlaw_alpha: float = 2.3
    landslide_counts: dict[int, int] = field(default_factory=dict)  # truth polygons per year
    new_counts: dict[int, int] = field(default_factory=dict)  # new_<year> polygons per year
    footprints: dict[int, str] = field(default_factory=dict)  # valid-data footprint (WKT) per year
    generator_version: int = GENERATOR_VERSION

    def to_json(self) -> str:
        d = Path(self.directory)
        rel = lambda p: Path(p).name if Path(p).parent == d else str(p)
        return json.dumps({
            "generator_version": self.generator_version,
            "directory": str(d),
            "spec": self.spec.to_dict(),
            "rasters": {str(y): rel(p) for y, p in self.rasters.items()},
            "truth": rel(self.truth_path),
            "band_names": list(self.band_names),
            "true_powerlaw_alpha": self.true_powerlaw_alpha,
            "landslide_counts": {str(y): int(n) for y, n in self.landslide_counts.items()},
            "new_counts": {str(y): int(n) for y, n in self.new_counts.items()},
            "footprints": {str(y): w for y, w in self.footprints.items()},
        }, indent=2)

    @classmethod
    def from_json(cls, text: str, directory: str | os.PathLike | None = None) -> "SceneManifest":
        d = json.loads(text)
        directory = str(directory if directory is not None else d["directory"])
        path = lambda p: os.path.join(directory, p)
        return cls(
            directory=directory,
            spec=SceneSpec.from_dict(d["spec"]),
            rasters={int(y): path(p) for y, p in d["rasters"].items()},
            truth_path=path(d["truth"]),
            band_names=list(d["band_names"]),
            true_powerlaw_alpha=float(d.get("true_powerlaw_alpha", d["spec"]["powerlaw_alpha"])),
            landslide_counts={int(y): int(n) for y, n in d.get("landslide_counts", {}).items()},
            new_counts={int(y): int(n) for y, n in d.get("new_counts", {}).items()},
            footprints={int(y): w for y, w in d.get("footprints", {}).items()},
            generator_version=int(d.get("generator_version", 0)),
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "SceneManifest":
        path = Path(directory) / SCENE_JSON
        if not path.exists():
            raise InputError(f"{path} does not exist; generate the demo scene first.")
        return cls.from_json(path.read_text(), directory=str(Path(directory).absolute()))
