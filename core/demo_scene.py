"""Deterministic procedural multi-year satellite scenes with known landslide truth.

The scenes stand in for yearly PlanetScope (3 m, B/G/R/NIR) or RapidEye (5 m,
B/G/R/RE/NIR) surface-reflectance mosaics over steep forested terrain, so the whole
pipeline (mapping, change detection, metrics, benchmarks) can be exercised without
downloading anything, and every number it reports can be checked against a truth
whose statistics (counts, power-law exponent of the areas) are known by construction.

Design choices that matter to users of the data:

* Every random quantity is a pure function of ``spec.seed`` and of global pixel or
  lattice coordinates (hash-based noise), so a pixel's value never depends on which
  block it was computed in, and memory stays bounded at any raster size.
* Landslides are vectors first.  The raster scars are burned from exactly the
  polygons written to ``truth.gpkg`` (pixel-centre rule), so raster and truth agree.
* Visibility rule: a scar part triggered in year ``e`` has recovery fraction
  ``r = 1 - exp(-k (t - e))`` in year ``t`` (``k`` per landslide); its reflectance is
  ``(1 - r) * bare + r * vegetation``.  It is *visible* (part of the truth) while
  ``r < 0.5``; after that it still shows as a fading scar but is no longer truth.
* Truth polygons are clipped to the year's valid footprint (nodata pixels are 0 in
  all bands).  Clouds and cloud shadows are *not* removed from the truth: they are a
  real occluder that a mapper has to cope with.
* ``new_<year>`` holds what is new relative to the previous year of the series:
  a whole polygon (``change="new"``) or ``union(P_T) - union(P_prev)``
  (``change="enlarged"``).  It is computed before footprint clipping, then clipped.
* History: five years before the first year get a background rate of landslides
  (so the first year shows a few old, partly healed scars), the event year a burst
  of ``landslide_density`` per km², every other year the background rate again, and
  each visible landslide may grow by a lobe at its crown or toe.  New landslides are
  whole, inside the scene and off rivers and roads, and their areas (not those of
  enlargement lobes) follow the truncated power law, so its exponent is known.
* Terrain, land cover and noise live on pixel lattices, so a 5 m scene with the same
  seed is a 5/3 enlargement of the 3 m one, not the same ground at a new resolution.
"""
from __future__ import annotations

import json
import math
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box

from .errors import InputError
from .names import changes_layer, landslides_layer
from .vector_io import VectorLayer, write_geopackage

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


# --------------------------------------------------------------------------- spec


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


# ----------------------------------------------------------------------- manifest


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


# ------------------------------------------------------------------ hash and noise

_M64 = (1 << 64) - 1
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


def _mix_int(x: int) -> int:
    x &= _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _key(seed: int, *parts) -> int:
    """A 64-bit key from the seed and a purpose; strings go through crc32 (not hash())."""
    h = _mix_int(int(seed) + 0x632BE59BD9B4E019)
    for p in parts:
        v = zlib.crc32(p.encode()) if isinstance(p, str) else int(p)
        h = _mix_int(h ^ ((v * 0x9E3779B97F4A7C15) & _M64))
    return h


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([_key(seed, *parts) & 0xFFFFFFFF, _key(seed, *parts) >> 32])


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _S30
    h *= _C1
    h ^= h >> _S27
    h *= _C2
    h ^= h >> _S31
    return h


def _hash2d(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    """64-bit hash of every (row, col) pair (broadcast), a pure function of the integers."""
    a = np.asarray(rows, np.int64).astype(np.uint64) * _K1 + np.uint64(key)
    b = np.asarray(cols, np.int64).astype(np.uint64) * _K2
    return _mix(a[..., :, None] ^ b[..., None, :]) if a.ndim == 1 else _mix(a ^ b)


def _white(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    h = _hash2d(rows, cols, key)
    return (h >> _S40).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1.0)


def _subdivide(p: np.ndarray, p0: int, a: int, b: int, axis: int) -> np.ndarray:
    """Cubic B-spline subdivision: control points at half spacing for nodes [a, b).

    Exact refinement, so summing octaves level by level gives the same function as
    evaluating every octave's B-spline directly (which is what the point path does).
    """
    p = np.moveaxis(p, axis, 0)
    even = (p[:-2] + np.float32(6.0) * p[1:-1] + p[2:]) * np.float32(0.125)
    odd = (p[1:-1] + p[2:]) * np.float32(0.5)
    out = np.empty((2 * even.shape[0],) + p.shape[1:], np.float32)
    out[0::2] = even
    out[1::2] = odd
    start = 2 * (p0 + 1)
    return np.moveaxis(out[a - start:b - start], 0, axis)


def _parent(a: int, b: int) -> tuple[int, int]:
    return (a >> 1) - 1, ((b - 1) >> 1) + 2


def _bspline(t: np.ndarray):
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    return (s * s * s / 6.0, (3 * t3 - 6 * t2 + 4) / 6.0, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0, t3 / 6.0)


_ONE_OCTAVE_STD = math.sqrt(1.0 / 3.0) * (151.0 / 315.0)  # std of B-spline value noise from U(-1,1)


def _spectrum(lo: int, hi: int, hurst: float, roll: int | None = None, roll_exp: float = 2.0) -> dict:
    """Octave amplitudes ∝ wavelength^H, rolled off (steeper) below level ``roll``, std 1."""
    amps = {}
    for lev in range(lo, hi + 1):
        a = 2.0 ** (lev * hurst)
        if roll is not None and lev < roll:
            a = 2.0 ** (roll * hurst) * 2.0 ** ((lev - roll) * roll_exp)
        amps[lev] = a
    s = _ONE_OCTAVE_STD * math.sqrt(sum(v * v for v in amps.values()))
    return {lev: v / s for lev, v in amps.items()}


class _Fbm:
    """Sum of B-spline value-noise octaves on pixel-aligned lattices of spacing 2**level.

    ``grid`` evaluates any pixel window (memory ∝ window), ``points`` any coordinates;
    both are the same function of global pixel coordinates (row, col of pixel centres).
    """

    def __init__(self, key: int, amps: dict[int, float]):
        self.amps = {int(k): float(v) for k, v in amps.items() if v}
        self.top = max(self.amps)
        self.keys = {lev: _key(key, lev) for lev in range(self.top + 1)}

    def grid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        rr = [(r0 - 1, r1 + 1)]
        cc = [(c0 - 1, c1 + 1)]
        for _ in range(self.top):
            rr.append(_parent(*rr[-1]))
            cc.append(_parent(*cc[-1]))
        top = self.top
        ctl = _white(np.arange(*rr[top]), np.arange(*cc[top]), self.keys[top])
        ctl *= np.float32(self.amps.get(top, 0.0))
        for lev in range(top - 1, -1, -1):
            ctl = _subdivide(ctl, rr[lev + 1][0], *rr[lev], 0)
            ctl = _subdivide(ctl, cc[lev + 1][0], *cc[lev], 1)
            amp = self.amps.get(lev)
            if amp:
                ctl += np.float32(amp) * _white(np.arange(*rr[lev]), np.arange(*cc[lev]), self.keys[lev])
        sixth = np.float32(1.0 / 6.0)
        ctl = (ctl[:-2] + np.float32(4.0) * ctl[1:-1] + ctl[2:]) * sixth
        return (ctl[:, :-2] + np.float32(4.0) * ctl[:, 1:-1] + ctl[:, 2:]) * sixth

    def points(self, row, col, min_level: int = 0) -> np.ndarray:
        """Values at float pixel coordinates (float64); ``min_level`` skips fine octaves."""
        row = np.asarray(row, np.float64).ravel()
        col = np.asarray(col, np.float64).ravel()
        val = np.zeros(row.shape)
        taps = np.arange(-1, 3)
        for lev, amp in self.amps.items():
            if lev < min_level:
                continue
            s = float(2 ** lev)
            y, x = row / s, col / s
            iy, ix = np.floor(y), np.floor(x)
            ty, tx = y - iy, x - ix
            wy = np.stack(_bspline(ty), -1)
            wx = np.stack(_bspline(tx), -1)
            h = _hash2d((iy.astype(np.int64)[:, None] + taps)[:, :, None],
                        (ix.astype(np.int64)[:, None] + taps)[:, None, :], self.keys[lev])
            v = (h >> _S40).astype(np.float64) * 2.0 ** -23 - 1.0  # (n, 4, 4)
            val += amp * np.einsum("ni,ni->n", np.einsum("nij,nj->ni", v, wx), wy)
        return val


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / np.float32(hi - lo), 0, 1)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


# ------------------------------------------------------------------------- colours

# Surface reflectance × 10,000 for B, G, R, RE, NIR (the 4-band sensor drops RE).
_COLOURS = {
    "forest_dense": (280, 560, 300, 1450, 3100),   # NDVI 0.82
    "forest_sparse": (430, 740, 620, 1700, 2700),  # NDVI 0.63
    "grass": (480, 830, 660, 1750, 2750),          # NDVI 0.61
    "crop": (380, 760, 450, 1800, 3400),           # NDVI 0.77
    "bare_field": (760, 1000, 1250, 1500, 1750),   # NDVI 0.17: ploughed soil, a confuser
    "rock": (1050, 1200, 1350, 1600, 1820),        # NDVI 0.15: bright ridge rock, a confuser
    "scar": (1100, 1300, 1550, 1850, 2150),        # NDVI 0.16: fresh landslide debris
    "water": (650, 760, 620, 460, 300),            # NDVI -0.35: sediment-laden river
    "gravel": (1350, 1500, 1650, 1850, 2000),      # NDVI 0.10: river bars, a confuser
    "road": (1450, 1550, 1650, 1800, 1900),        # NDVI 0.07
    "cloud": (6400, 6500, 6600, 6700, 6800),
}
_HAZE = (260, 190, 130, 90, 70)  # additive path radiance at full haze


def _colour(name: str, bands: Sequence[int]) -> np.ndarray:
    return np.asarray([_COLOURS[name][b] for b in bands], np.float32)[:, None, None]


# ---------------------------------------------------------------------- the plan


@dataclass
class _Part:
    year: int
    geom: Polygon
    axis: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # cos, sin, centre, half-length along slope

    @classmethod
    def make(cls, year: int, geom: Polygon, theta: float) -> "_Part":
        ca, sa = math.cos(theta), math.sin(theta)
        xy = shapely.get_coordinates(geom)
        proj = xy[:, 0] * ca + xy[:, 1] * sa
        lo, hi = float(proj.min()), float(proj.max())
        return cls(year, geom, (ca, sa, 0.5 * (lo + hi), max(0.5 * (hi - lo), 1e-6)))


@dataclass
class _Landslide:
    ls_id: int
    theta: float  # downslope direction, radians from +x (east) counter-clockwise
    rate: float  # recovery rate k per year
    brightness: float
    nir_factor: float
    parts: list[_Part] = field(default_factory=list)

    def recovery(self, part: _Part, year: int) -> float:
        return 1.0 - math.exp(-self.rate * (year - part.year))

    def visible_parts(self, year: int) -> list[Polygon]:
        return [p.geom for p in self.parts if p.year <= year and self.recovery(p, year) < VISIBLE_RECOVERY]


@dataclass
class _Year:
    gain: np.ndarray
    offset: np.ndarray
    haze: float
    phen_r: float
    phen_nir: float
    clouds: list  # (row, col, radius_px) of cloud blobs
    shadow_shift: tuple[int, int]
    nodata: tuple | None  # (corner, threshold) of a diagonal nodata strip
    footprint: Polygon


class ScenePlan:
    """The vector and scalar description of a scene, shared by all its blocks and years."""

    def __init__(self, spec: SceneSpec):
        spec.validate()
        self.spec = spec
        self.px = float(spec.pixel_size)
        self.size = int(spec.size)
        self.ox, self.oy = spec.origin
        self.band_idx = [0, 1, 2, 3, 4] if spec.resolved_sensor() == "rapideye" else [0, 1, 2, 4]
        self.scene_box = box(*spec.extent)
        px = self.px
        top = int(np.clip(round(math.log2(3000.0 / px)), 3, 14))
        roll = int(np.clip(round(math.log2(100.0 / px)), 0, top - 1))
        s = spec.seed
        self.dem1 = _Fbm(_key(s, "dem1"), _spectrum(0, top, spec.hurst, roll, 1.8))
        self.dem2 = _Fbm(_key(s, "dem2"), _spectrum(roll, top - 1, spec.hurst, roll + 1, 1.5))
        self.vigour = _Fbm(_key(s, "vigour"), _spectrum(max(roll - 2, 1), top - 2, 0.6))
        self.texture = _Fbm(_key(s, "texture"), _spectrum(0, 2, 0.5))
        self.patch = _Fbm(_key(s, "patch"), _spectrum(1, max(roll, 2), 0.7))
        self.haze_noise = _Fbm(_key(s, "haze"), _spectrum(max(top - 3, 1), top, 0.5))
        self.cloud_noise = _Fbm(_key(s, "cloud"), _spectrum(0, max(roll + 2, 3), 0.35))
        self.relief_scale = spec.relief / 1000.0
        self.base_elevation = 1500.0
        self.river_hw = max(12.0, 2.5 * px)
        self.floor_w = self.river_hw + 25.0
        self.valley_w = self.floor_w + 300.0
        self.road_hw = 3.5
        self.river: LineString | None = None
        self.plane = (0.0, 0.0, 0.0)
        self._plan_river_and_road()
        self._plan_fields()
        self.rock_level = float(np.percentile(self._coarse_z, 85))
        self.landslides: list[_Landslide] = []
        self._plan_landslides()
        self.years = {y: self._plan_year(y) for y in spec.years}

    # -- coordinates ----------------------------------------------------------
    def to_pixel(self, x, y):
        return (self.oy - np.asarray(y, float)) / self.px - 0.5, (np.asarray(x, float) - self.ox) / self.px - 0.5

    def _raw_z_points(self, x, y, min_level=0):
        """DEM before the river valley is carved; |f2| adds sharp V-shaped ravines."""
        row, col = self.to_pixel(x, y)
        f1 = self.dem1.points(row, col, min_level)
        f2 = self.dem2.points(row, col, min_level)
        return self.base_elevation + self.relief_scale * (180.0 * f1 + 150.0 * np.abs(f2))

    def _plane_at(self, x, y):
        a, bx, by = self.plane
        return a + bx * (np.asarray(x) - self.ox) + by * (np.asarray(y) - self.oy)

    def _carve_weight(self, d):
        """0 on the valley floor, 1 beyond the valley: the river valley profile."""
        t = np.clip((np.asarray(d, float) - self.floor_w) / (self.valley_w - self.floor_w), 0, 1)
        return t * t * (3 - 2 * t)

    def elevation_at(self, x, y, min_level: int = 0) -> np.ndarray:
        x = np.asarray(x, float).ravel()
        y = np.asarray(y, float).ravel()
        z = self._raw_z_points(x, y, min_level=min_level)
        if self.river is None:
            return z
        d = self.river_distance(x, y)
        p = self._plane_at(x, y)
        return p + (z - p) * self._carve_weight(d)

    def gradient_at(self, x, y, h: float | None = None):
        """dz/dx, dz/dy by central differences of the carved DEM (step h, default 1 px)."""
        h = self.px if h is None else h
        x = np.asarray(x, float).ravel()
        y = np.asarray(y, float).ravel()
        xs = np.concatenate([x + h, x - h, x, x])
        ys = np.concatenate([y, y, y + h, y - h])
        z = self.elevation_at(xs, ys).reshape(4, -1)
        return (z[0] - z[1]) / (2 * h), (z[2] - z[3]) / (2 * h)

    # -- river and road -------------------------------------------------------
    def _coarse_grid(self):
        n = int(np.clip(self.size // 4, 32, 256))
        cs = self.size * self.px / n
        c = (np.arange(n) + 0.5) * cs
        xx, yy = np.meshgrid(self.ox + c, self.oy - c)
        return n, cs, xx, yy

    def _least_cost_path(self, cost: np.ndarray, cs: float, horizontal: bool) -> np.ndarray:
        """Cheapest 8-connected path from one side of the grid to the opposite side."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import dijkstra

        n = cost.shape[0]
        idx = np.arange(n * n).reshape(n, n)
        src, dst, w = [], [], []
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = idx[0:n - dr, max(0, -dc):n - max(0, dc)]
            b = idx[dr:n, max(0, dc):n + min(0, dc)]
            length = cs * math.hypot(dr, dc)
            ww = length * 0.5 * (cost.ravel()[a.ravel()] + cost.ravel()[b.ravel()])
            src += [a.ravel(), b.ravel()]
            dst += [b.ravel(), a.ravel()]
            w += [ww, ww]
        g = coo_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n * n, n * n))
        g = g.tocsr()
        starts = idx[:, 0] if horizontal else idx[0, :]
        ends = idx[:, -1] if horizontal else idx[-1, :]
        dist, pred, _ = dijkstra(g, indices=starts, min_only=True, return_predecessors=True)
        node = int(ends[np.argmin(dist[ends])])
        path = [node]
        while pred[node] >= 0:
            node = int(pred[node])
            path.append(node)
        path = np.asarray(path[::-1])
        return np.stack([path // n, path % n], 1)  # (row, col) cells

    def _path_line(self, cells: np.ndarray, cs: float, horizontal: bool, rng: np.random.Generator,
                   meander: bool) -> LineString:
        """A grid path made natural: Gaussian-smoothed, optionally meandering, extended
        beyond the scene edges so it never ends inside the image."""
        from scipy.ndimage import gaussian_filter1d

        pts = np.stack([self.ox + (cells[:, 1] + 0.5) * cs, self.oy - (cells[:, 0] + 0.5) * cs], 1)
        pts = _resample(pts, cs / 2)
        sigma = max(2.0, 60.0 / (cs / 2))  # at least ~60 m of smoothing
        pts = np.stack([gaussian_filter1d(pts[:, 0], sigma, mode="nearest"),
                        gaussian_filter1d(pts[:, 1], sigma, mode="nearest")], 1)
        step = max(self.px, min(cs / 2, 3 * self.px))
        pts = _resample(pts, step)
        if meander and len(pts) > 3:
            seg = np.diff(pts, axis=0)
            tang = np.vstack([seg, seg[-1:]])
            tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
            normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
            s_ = np.concatenate([[0], np.cumsum(np.linalg.norm(seg, axis=1))])
            off = np.zeros(len(pts))
            for wl in (900.0, 420.0, 190.0):
                off += rng.uniform(0.5, 1.0) * wl * 0.06 * np.sin(2 * np.pi * s_ / wl + rng.uniform(0, 2 * np.pi))
            taper = np.clip(np.minimum(s_, s_[-1] - s_) / 200.0, 0, 1)
            pts = pts + normal * (off * taper)[:, None]
            pts = np.stack([gaussian_filter1d(pts[:, 0], 2.0, mode="nearest"),
                            gaussian_filter1d(pts[:, 1], 2.0, mode="nearest")], 1)
        ext = 3 * cs + 10 * self.px
        def extend(end, inner):
            d = end - inner
            return end + d / max(float(np.linalg.norm(d)), 1e-9) * ext

        k = min(3, len(pts) - 1)
        return LineString(np.vstack([extend(pts[0], pts[k]), pts, extend(pts[-1], pts[-1 - k])]))

    def _plan_river_and_road(self) -> None:
        n, cs, xx, yy = self._coarse_grid()
        min_level = max(0, int(math.log2(max(cs / self.px, 1.0))) - 1)
        z = self._raw_z_points(xx.ravel(), yy.ravel(), min_level=min_level).reshape(n, n)
        rng = _rng(self.spec.seed, "river")
        horizontal = bool(rng.integers(2))
        zn = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
        cells = self._least_cost_path((0.02 + zn) ** 3, cs, horizontal)
        self.river = self._path_line(cells, cs, horizontal, rng, meander=True)
        self.river_distance = _LineDistance(self.river, self.valley_w + 50.0)
        # A tilted plane through the river's course is the valley floor: no per-pixel
        # look-ups of the river profile are needed, so blocks stay independent.
        rx, ry = np.asarray(self.river.coords).T
        side = self.size * self.px
        inside = (rx > self.ox) & (rx < self.ox + side) & (ry < self.oy) & (ry > self.oy - side)
        rx, ry = rx[inside], ry[inside]
        rz = self._raw_z_points(rx, ry, min_level=min_level)
        a = np.stack([np.ones_like(rx), rx - self.ox, ry - self.oy], 1)
        coef, *_ = np.linalg.lstsq(a, rz, rcond=None)
        resid = rz - a @ coef
        self.plane = (float(coef[0] + np.percentile(resid, 25)), float(coef[1]), float(coef[2]))
        d = self.river_distance(xx, yy).reshape(n, n)
        p = self._plane_at(xx, yy)
        zc = p + (z - p) * self._carve_weight(d)
        self._coarse_z = zc
        gy, gx = np.gradient(zc, cs)
        tan = np.hypot(gx, gy)
        cost = 1.0 + (tan / 0.12) ** 2 + 60.0 * (d < self.floor_w + 15.0)
        cells = self._least_cost_path(cost, cs, horizontal)
        self.road = self._path_line(cells, cs, horizontal, rng, meander=False)
        self.road_distance = _LineDistance(self.road, 200.0)
        self.river_zone = shapely.buffer(self.river, self.river_hw + 12.0)
        self.road_zone = shapely.buffer(self.road, self.road_hw + 4.0)
        shapely.prepare(self.river_zone)
        shapely.prepare(self.road_zone)

    # -- fields ---------------------------------------------------------------
    def _slope_deg(self, x, y, h=None):
        gx, gy = self.gradient_at(x, y, h)
        return np.degrees(np.arctan(np.hypot(gx, gy))), gx, gy

    def _plan_fields(self) -> None:
        rng = _rng(self.spec.seed, "fields")
        side = self.size * self.px
        n_clusters = max(1, int(round(self.spec.area_km2 * 2.0)))
        n_try = max(200, 25 * n_clusters)
        x = self.ox + rng.uniform(0, side, n_try)
        y = self.oy - rng.uniform(0, side, n_try)
        slope, gx, gy = self._slope_deg(x, y, 10.0)
        ok = (slope < 14.0) & (self.river_distance(x, y) > self.river_hw + 45.0) \
            & (self.road_distance(x, y) > self.road_hw + 15.0)
        polys = []
        for i in np.flatnonzero(ok)[:n_clusters]:
            along = math.atan2(gy[i], gx[i]) + math.pi / 2  # fields follow the contours
            ca, sa = math.cos(along), math.sin(along)
            nu, nv = int(rng.integers(2, 6)), int(rng.integers(2, 5))
            w, h = rng.uniform(25, 80), rng.uniform(20, 55)
            gap = rng.uniform(3, 7)
            for iu in range(nu):
                for iv in range(nv):
                    if rng.random() < 0.2:
                        continue
                    fw, fh = w * rng.uniform(0.7, 1.2), h * rng.uniform(0.7, 1.2)
                    u = (iu - nu / 2) * (w + gap)
                    v = (iv - nv / 2) * (h + gap)
                    cx, cy = x[i] + u * ca - v * sa, y[i] + u * sa + v * ca
                    corners = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]])
                    px_ = cx + corners[:, 0] * ca - corners[:, 1] * sa
                    py_ = cy + corners[:, 0] * sa + corners[:, 1] * ca
                    polys.append(Polygon(np.stack([px_, py_], 1)))
        polys = np.asarray(polys, dtype=object) if polys else np.empty(0, dtype=object)
        if len(polys):
            c = shapely.centroid(polys)
            cx, cy = shapely.get_x(c), shapely.get_y(c)
            slope, _, _ = self._slope_deg(cx, cy, 10.0)
            keep = (slope < 20.0) & ~shapely.intersects(self.river_zone, polys) \
                & ~shapely.intersects(self.road_zone, polys) & shapely.intersects(self.scene_box, polys)
            polys = polys[keep]
        self.fields = polys
        self.fields_tree = shapely.STRtree(polys)
        # per year: 0 green crop, 1 grass/fallow, 2 bare ploughed soil
        self.field_state = {}
        for y in self.spec.years:
            r = _rng(self.spec.seed, "field-state", y).random(len(polys))
            self.field_state[y] = np.where(r < 0.5, 0, np.where(r < 0.75, 1, 2))

    # -- landslides -----------------------------------------------------------
    def _candidates(self, rng: np.random.Generator, n: int):
        """Uniform points thinned with a probability that grows with slope."""
        side = self.size * self.px
        x = self.ox + rng.uniform(0, side, n)
        y = self.oy - rng.uniform(0, side, n)
        slope, gx, gy = self._slope_deg(x, y, 15.0)
        p = np.clip((slope - 15.0) / 25.0, 0, 1) ** 1.5
        keep = rng.random(n) < p
        keep &= self.river_distance(x, y) > self.river_hw + 20.0
        theta = np.arctan2(-gy, -gx)  # downslope
        return list(zip(x[keep], y[keep], theta[keep]))

    def _shape(self, rng: np.random.Generator, area: float, theta: float, cx: float, cy: float,
               aspect: float | None = None) -> Polygon:
        """Elongated, ragged teardrop: long axis downslope, wider crown upslope."""
        n = 72
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        aspect = float(np.clip(rng.lognormal(math.log(2.2), 0.3), 1.3, 5.0)) if aspect is None else aspect
        k = np.arange(2, 16)
        amp = rng.normal(0, 1, len(k)) * 0.16 / k ** 0.75
        phase = rng.uniform(0, 2 * np.pi, len(k))
        rho = 1.0 + amp @ np.cos(np.outer(k, t) + phase[:, None])  # ragged outline
        jitter = rng.normal(0, 0.05, n)
        rho *= 1 + 0.5 * jitter + 0.25 * (np.roll(jitter, 1) + np.roll(jitter, -1))
        rho = np.clip(rho, 0.45, 1.7)
        u = rho * np.cos(t)  # along slope: -1 crown (upslope) … +1 toe
        v = rho * np.sin(t) / aspect
        v *= np.clip(1.0 - rng.uniform(0.1, 0.6) * u, 0.25, None)
        poly = Polygon(np.stack([u, v], 1))
        if not poly.is_valid:
            poly = max(getattr(shapely.make_valid(poly), "geoms", [poly]), key=lambda g: g.area)
        c = poly.centroid
        s = math.sqrt(area / poly.area)  # exact target area: the power law is not distorted
        ca, sa = math.cos(theta), math.sin(theta)
        xy = shapely.get_coordinates(poly.exterior)
        uu = (xy[:, 0] - c.x) * s
        vv = (xy[:, 1] - c.y) * s
        return Polygon(np.stack([cx + uu * ca - vv * sa, cy + uu * sa + vv * ca], 1))

    def _plan_landslides(self) -> None:
        spec = self.spec
        first, last = spec.years[0], spec.years[-1]
        t0 = min(first, spec.event_year) - 5
        t1 = max(last, spec.event_year)
        a_min, a_max = spec.min_landslide_area, spec.effective_max_area()
        inner = self.scene_box.buffer(-self.px)
        shapely.prepare(inner)
        cell = 200.0
        index: dict[tuple[int, int], list[tuple[int, _Part]]] = {}

        def cells_of(g):
            x0, y0, x1, y1 = g.bounds
            return [(i, j) for i in range(int(x0 // cell), int(x1 // cell) + 1)
                    for j in range(int(y0 // cell), int(y1 // cell) + 1)]

        def conflicts(g, year, own=-1):
            if not inner.contains(g) or shapely.intersects(self.river_zone, g) \
                    or shapely.intersects(self.road_zone, g):
                return True
            seen = set()
            for c in cells_of(g):
                for j, part in index.get(c, ()):
                    if j == own or id(part) in seen:
                        continue
                    seen.add(id(part))
                    ls = self.landslides[j]
                    if part.year <= year and ls.recovery(part, year) < VISIBLE_RECOVERY and \
                            shapely.dwithin(part.geom, g, self.px):
                        return True
            return False

        def add(j, part):  # j: index in self.landslides (ls_id - 1)
            self.landslides[j].parts.append(part)
            for c in cells_of(part.geom):
                index.setdefault(c, []).append((j, part))

        for year in range(t0, t1 + 1):
            rng = _rng(spec.seed, "landslides", year)
            # enlargement of landslides that were visible the year before
            for j, ls in enumerate(list(self.landslides)):
                if not ls.visible_parts(year - 1) or rng.random() >= spec.enlarge_probability:
                    continue
                base = shapely.union_all(ls.visible_parts(year - 1))
                coords = np.asarray(shapely.get_coordinates(base))
                ca, sa = math.cos(ls.theta), math.sin(ls.theta)
                proj = coords[:, 0] * ca + coords[:, 1] * sa
                area = base.area * rng.uniform(0.25, 0.9)
                length = math.sqrt(area * 2.2)
                up = rng.random() < 0.5  # retrogression at the crown, or runout at the toe
                c = base.centroid
                c_proj = c.x * ca + c.y * sa
                shift = (proj.min() - c_proj - 0.3 * length) if up else (proj.max() - c_proj + 0.3 * length)
                lobe = self._shape(rng, area, ls.theta, c.x + shift * ca, c.y + shift * sa)
                if shapely.intersects(lobe, base) and not conflicts(lobe, year, own=j):
                    add(j, _Part.make(year, lobe, ls.theta))
            # new landslides
            rate = 1.0 if year == spec.event_year else spec.background_rate
            n_new = int(round(rate * spec.landslide_density * spec.area_km2))
            if n_new == 0:
                continue
            areas = sample_landslide_areas(rng, n_new, spec.powerlaw_alpha, a_min, a_max)
            pool: list = []
            for area in areas:
                for _ in range(40):
                    if not pool:
                        pool = self._candidates(rng, max(256, 8 * n_new))
                        if not pool:
                            break
                    cx, cy, theta = pool.pop()
                    g = self._shape(rng, float(area), float(theta), float(cx), float(cy))
                    if not conflicts(g, year):
                        # ids start at 1 so that 0 stays free for "no landslide" in label rasters
                        ls = _Landslide(len(self.landslides) + 1, float(theta), float(rng.uniform(0.12, 0.55)),
                                        float(rng.uniform(0.82, 1.18)), float(rng.uniform(0.9, 1.12)))
                        self.landslides.append(ls)
                        add(len(self.landslides) - 1, _Part.make(year, g, ls.theta))
                        break
        self._all_parts = [(ls, p) for ls in self.landslides for p in ls.parts]
        self._lock = threading.Lock()
        self._render_cache: dict = {}

    # -- per-year conditions --------------------------------------------------
    def _plan_year(self, year: int) -> _Year:
        spec = self.spec
        rng = _rng(spec.seed, "year", year)
        nb = len(self.band_idx)
        gain = (1.0 + rng.normal(0, 0.025) + rng.normal(0, 0.012, nb)).astype(np.float32)
        offset = rng.normal(0, 15, nb).astype(np.float32)
        haze = float(rng.uniform(0.4, 1.0) if rng.random() < 0.35 else rng.uniform(0, 0.15))
        phen_r = float(rng.normal(1.0, 0.06))
        phen_nir = float(rng.normal(1.0, 0.04))
        clouds = []
        az, el = math.radians(spec.sun_azimuth), math.radians(spec.sun_elevation)
        dist = 1500.0 / math.tan(el) / self.px
        shift = (int(round(-dist * math.cos(az))), int(round(dist * math.sin(az))))
        if year in spec.resolved_cloud_years():
            area_px = self.size ** 2
            target = spec.cloud_cover * area_px
            total = 0.0
            while total < target:
                r = rng.uniform(60, 320) / self.px * max(1.0, self.size / 2048) ** 0.3
                cr, cc = rng.uniform(0, self.size, 2)
                for _ in range(int(rng.integers(4, 11))):
                    dr, dc = rng.normal(0, 1.1 * r, 2)
                    clouds.append((cr + dr, cc + dc, r * rng.uniform(0.3, 0.8)))
                total += 1.3 * math.pi * r * r
        footprint = self.scene_box
        nodata = None
        if year in spec.resolved_nodata_years():
            corner = int(rng.integers(4))
            t = math.floor(rng.uniform(0.25, 0.5) * self.size) + 0.5  # never on a pixel centre
            nodata = (corner, t)
            cx = self.ox if corner in (0, 3) else self.ox + self.size * self.px
            cy = self.oy if corner in (0, 1) else self.oy - self.size * self.px
            sx = 1 if corner in (0, 3) else -1
            sy = -1 if corner in (0, 1) else 1
            tri = Polygon([(cx, cy), (cx + sx * t * self.px, cy), (cx, cy + sy * t * self.px)])
            footprint = self.scene_box.difference(tri)
        return _Year(gain, offset, haze, phen_r, phen_nir, clouds, shift, nodata, footprint)

    # -- truth ----------------------------------------------------------------
    def truth(self) -> dict[str, VectorLayer]:
        """``landslides_<year>`` and ``new_<year>`` layers for every year of the spec."""
        spec = self.spec
        crs = _crs_wkt(spec.epsg)
        layers = {}
        prev: dict[int, tuple] = {}  # ls_id -> (visible part indices, union)
        for k, year in enumerate(spec.years):
            cur = {}
            for ls in self.landslides:
                idx = tuple(j for j, p in enumerate(ls.parts)
                            if p.year <= year and ls.recovery(p, year) < VISIBLE_RECOVERY)
                if idx:
                    old = prev.get(ls.ls_id)
                    same = old is not None and old[0] == idx
                    cur[ls.ls_id] = (idx, old[1] if same else shapely.union_all([ls.parts[j].geom for j in idx]))
            fp = self.years[year].footprint
            full_fp = fp.equals(self.scene_box)  # landslides lie inside the scene by construction
            ids, geoms, areas = [], [], []
            for i, (_, g) in cur.items():
                g = _polygonal(g if full_fp else g.intersection(fp))
                if g is not None:
                    ids.append(i), geoms.append(g), areas.append(g.area)
            layers[landslides_layer(year)] = _layer(geoms, ids, year, areas, crs)
            ids, geoms, areas, change = [], [], [], []
            for i, (idx, g) in cur.items():
                if k > 0 and i in prev:
                    if set(idx) <= set(prev[i][0]):
                        continue  # parts only healed: nothing new
                    g = _polygonal(g.difference(prev[i][1]), min_area=0.25 * self.px * self.px)
                    kind = "enlarged"
                else:
                    kind = "new"
                if g is not None and not full_fp:
                    g = _polygonal(g.intersection(fp))
                if g is not None:
                    ids.append(i), geoms.append(g), areas.append(g.area), change.append(kind)
            lay = _layer(geoms, ids, year, areas, crs)
            lay.fields["change"] = np.asarray(change, dtype=str) if change else np.asarray([], dtype="<U8")
            layers[changes_layer(year)] = lay
            prev = cur
        return layers

    def render_parts(self, year: int):
        """Scar parts drawn in ``year``, most recovered first so that fresher ones win
        where parts overlap (that keeps every truth pixel a visible scar), plus an
        STRtree over them."""
        with self._lock:
            cached = self._render_cache.get(year)
            if cached is None:
                items = []
                for ls, p in self._all_parts:
                    if p.year <= year:
                        r = ls.recovery(p, year)
                        if r < RENDER_RECOVERY:
                            items.append((r, ls.ls_id, p.year, ls, p))
                items.sort(key=lambda t: (-t[0], t[1], t[2]))
                geoms = np.asarray([it[4].geom for it in items], dtype=object) if items else np.empty(0, object)
                cached = (items, geoms, shapely.STRtree(geoms))
                self._render_cache[year] = cached
            return cached


def _resample(pts: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    if s[-1] <= 0:
        return pts
    t = np.linspace(0, s[-1], max(2, int(math.ceil(s[-1] / step)) + 1))
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], 1)


class _LineDistance:
    """Distance to a long polyline via an STRtree of its segments (shapely's direct
    distance scans every vertex for every point, which is far too slow here)."""

    def __init__(self, line: LineString, max_distance: float):
        self.max_distance = float(max_distance)
        xy = np.asarray(line.coords)
        self.segments = shapely.linestrings(np.stack([xy[:-1], xy[1:]], 1))
        self.tree = shapely.STRtree(self.segments)

    def __call__(self, x, y) -> np.ndarray:
        pts = shapely.points(np.asarray(x, float).ravel(), np.asarray(y, float).ravel())
        idx, dist = self.tree.query_nearest(pts, max_distance=self.max_distance, return_distance=True,
                                            all_matches=False)
        out = np.full(len(pts), np.inf)  # "farther than max_distance"
        out[idx[0]] = dist
        return out


def _crs_wkt(epsg: int) -> str:
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(int(epsg))
    return srs.ExportToWkt()


def _polygonal(g, min_area: float = 0.0):
    """Keep only the polygonal part of ``g`` (None if nothing of ``min_area`` is left)."""
    if g is None or g.is_empty:
        return None
    if g.geom_type in ("Polygon", "MultiPolygon"):
        out = g
    else:
        polys = [p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")]
        if not polys:
            return None
        out = shapely.union_all(polys)
    if min_area and out.geom_type == "MultiPolygon":
        keep = [p for p in out.geoms if p.area >= min_area]
        if not keep:
            return None
        out = keep[0] if len(keep) == 1 else shapely.MultiPolygon(keep)
    if out.is_empty or out.area <= min_area:
        return None
    return out


def _layer(geoms, ids, year, areas, crs) -> VectorLayer:
    return VectorLayer(
        np.asarray(geoms, dtype=object) if geoms else np.empty(0, dtype=object),
        {"ls_id": np.asarray(ids, np.int64), "year": np.full(len(ids), year, np.int64),
         "area_m2": np.asarray(areas, np.float64)},
        crs,
    )


# -------------------------------------------------------------- public helpers

_PLAN_CACHE: dict[str, ScenePlan] = {}


def plan_scene(spec: SceneSpec) -> ScenePlan:
    """The scene's vectors (river, road, fields, landslide history); cached per spec."""
    k = json.dumps(spec.to_dict(), sort_keys=True)
    plan = _PLAN_CACHE.get(k)
    if plan is None:
        plan = ScenePlan(spec)
        if len(_PLAN_CACHE) >= 4:
            _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
        _PLAN_CACHE[k] = plan
    return plan


def sample_landslide_areas(rng: np.random.Generator, n: int, alpha: float, a_min: float,
                           a_max: float | None = None) -> np.ndarray:
    """Areas from p(A) ∝ A^-alpha on [a_min, a_max] (inverse CDF of the truncated Pareto)."""
    u = rng.random(n)
    trunc = 0.0 if not a_max else (a_min / a_max) ** (alpha - 1.0)
    return a_min * (1.0 - u * (1.0 - trunc)) ** (-1.0 / (alpha - 1.0))


def fit_powerlaw_alpha(areas: Iterable[float], a_min: float) -> float:
    """Maximum-likelihood exponent of a Pareto tail above a_min (Clauset et al. 2009)."""
    a = np.asarray(list(areas), float)
    a = a[a >= a_min]
    if len(a) == 0:
        return float("nan")
    return float(1.0 + len(a) / np.sum(np.log(a / a_min)))


def elevation_at(spec: SceneSpec, x, y) -> np.ndarray:
    """DEM elevation (m) at map coordinates, the same surface the rasters are shaded with."""
    return plan_scene(spec).elevation_at(x, y)


def slope_at(spec: SceneSpec, x, y) -> np.ndarray:
    """Slope in degrees at map coordinates (central differences over one pixel)."""
    gx, gy = plan_scene(spec).gradient_at(x, y)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


# --------------------------------------------------------------------- rendering


def _edt_distance(line, r0, r1, c0, c1, halo, plan: ScenePlan) -> np.ndarray:
    """Distance in pixels from each pixel of the window to the rasterised line (≤ halo)."""
    from rasterio.transform import from_origin
    from scipy.ndimage import distance_transform_edt

    R0, R1, C0, C1 = r0 - halo, r1 + halo, c0 - halo, c1 + halo
    win = box(plan.ox + C0 * plan.px, plan.oy - R1 * plan.px, plan.ox + C1 * plan.px, plan.oy - R0 * plan.px)
    part = line.intersection(win.buffer(plan.px))
    h, w = r1 - r0, c1 - c0
    if part.is_empty:
        return np.full((h, w), np.float32(halo + 1))
    tr = from_origin(plan.ox + C0 * plan.px, plan.oy - R0 * plan.px, plan.px, plan.px)
    burned = _rasterize([part], out_shape=(R1 - R0, C1 - C0), transform=tr, fill=0, default_value=1,
                       all_touched=True, dtype="uint8")
    if not burned.any():
        return np.full((h, w), np.float32(halo + 1))
    d = distance_transform_edt(burned == 0).astype(np.float32)
    return np.minimum(d[halo:halo + h, halo:halo + w], np.float32(halo + 1))


def _near(geom, r0, r1, c0, c1, margin_m, plan: ScenePlan) -> bool:
    b = box(plan.ox + c0 * plan.px - margin_m, plan.oy - r1 * plan.px - margin_m,
            plan.ox + c1 * plan.px + margin_m, plan.oy - r0 * plan.px + margin_m)
    return bool(shapely.intersects(geom, b))


def _window_transform(plan: ScenePlan, r0: int, c0: int):
    from rasterio.transform import from_origin

    return from_origin(plan.ox + c0 * plan.px, plan.oy - r0 * plan.px, plan.px, plan.px)


def _cloud_opacity(plan: ScenePlan, yr: _Year, r0, r1, c0, c1):
    """Cloud opacity in [0, 1] on a window, or None where no cloud reaches it."""
    blobs = [(cr, cc, rad) for cr, cc, rad in yr.clouds
             if cr + 1.6 * rad > r0 and cr - 1.6 * rad < r1 and cc + 1.6 * rad > c0 and cc - 1.6 * rad < c1]
    if not blobs:
        return None
    h, w = r1 - r0, c1 - c0
    dens = np.zeros((h, w), np.float32)
    rows = np.arange(r0, r1, dtype=np.float32)
    cols = np.arange(c0, c1, dtype=np.float32)
    for cr, cc, rad in blobs:
        rad_ext = 1.6 * rad
        a0, a1 = max(r0, int(cr - rad_ext)), min(r1, int(cr + rad_ext) + 1)
        b0, b1 = max(c0, int(cc - rad_ext)), min(c1, int(cc + rad_ext) + 1)
        if a0 >= a1 or b0 >= b1:
            continue
        dy = ((rows[a0 - r0:a1 - r0] - np.float32(cr)) / np.float32(rad_ext))[:, None]
        dx = ((cols[b0 - c0:b1 - c0] - np.float32(cc)) / np.float32(rad_ext))[None, :]
        q = np.maximum(np.float32(1.0) - (dx * dx + dy * dy), np.float32(0.0))
        sub = dens[a0 - r0:a1 - r0, b0 - c0:b1 - c0]
        sub += (np.float32(1.0) - sub) * (q * q)  # union-like: stays in [0, 1]
    n = plan.cloud_noise.grid(r0, r1, c0, c1)
    # texture modulates the blobs multiplicatively, so there is no cloud far from a blob
    # (otherwise blocks without blobs would disagree with their neighbours)
    return _smoothstep(dens * (np.float32(0.8) + np.float32(0.6) * n), np.float32(0.12), np.float32(0.65))


def _nodata_mask(plan: ScenePlan, yr: _Year, r0, r1, c0, c1):
    if yr.nodata is None:
        return None
    corner, t = yr.nodata
    n = plan.size
    rows = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
    u = cols if corner in (0, 3) else n - cols
    v = rows if corner in (0, 1) else n - rows
    mask = (u + v) < t
    return mask if mask.any() else None


def render_block(plan: ScenePlan, r0: int, r1: int, c0: int, c1: int,
                 years: Sequence[int]) -> dict[int, np.ndarray]:
    """All requested years of one pixel window, as uint16 (bands, rows, cols) arrays."""
    spec = plan.spec
    px = plan.px
    h, w = r1 - r0, c1 - c0
    f32 = np.float32
    bands = plan.band_idx
    nb = len(bands)

    # terrain with a one-pixel halo for the slopes
    f1 = plan.dem1.grid(r0 - 1, r1 + 1, c0 - 1, c1 + 1)
    f2 = plan.dem2.grid(r0 - 1, r1 + 1, c0 - 1, c1 + 1)
    k = f32(plan.relief_scale)
    z = f32(plan.base_elevation) + k * (f32(180.0) * f1 + f32(150.0) * np.abs(f2))
    del f1, f2
    halo = int(math.ceil(plan.valley_w / px)) + 2
    if _near(plan.river, r0 - 1, r1 + 1, c0 - 1, c1 + 1, plan.valley_w + 2 * px, plan):
        d_river = _edt_distance(plan.river, r0 - 1, r1 + 1, c0 - 1, c1 + 1, halo, plan) * f32(px)
        a, bx, by = plan.plane
        xr = ((np.arange(c0 - 1, c1 + 1) + 0.5) * px).astype(np.float64)
        yr_ = (-(np.arange(r0 - 1, r1 + 1) + 0.5) * px).astype(np.float64)
        plane = (a + by * yr_[:, None] + bx * xr[None, :]).astype(np.float32)
        wgt = _smoothstep(d_river, f32(plan.floor_w), f32(plan.valley_w))
        # only where carved: (z - p) + p is not always z in floating point, and pixels
        # must not depend on whether their block happened to be near the river
        z = np.where(wgt < 1, plane + (z - plane) * wgt, z)
        d_river = d_river[1:-1, 1:-1]
    else:
        d_river = None
    # Horn's method; y points north (up the rows)
    inv = f32(1.0 / (8.0 * px))
    dzdx = ((z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])) * inv
    dzdy = ((z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:]) - (z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:])) * inv
    zc = z[1:-1, 1:-1]
    del z
    az, el = math.radians(spec.sun_azimuth), math.radians(spec.sun_elevation)
    sx, sy, sz = f32(math.sin(az) * math.cos(el)), f32(math.cos(az) * math.cos(el)), f32(math.sin(el))
    norm = np.sqrt(f32(1.0) + dzdx * dzdx + dzdy * dzdy)
    illum = (sz - dzdx * sx - dzdy * sy) / norm
    tan_slope = np.sqrt(dzdx * dzdx + dzdy * dzdy)
    northness = -dzdy / norm  # > 0 on north-facing slopes (moister, denser forest)
    del dzdx, dzdy
    # direct light with a soft terminator ("cast-shadow-like" on slopes turned away),
    # plus diffuse sky light so shaded slopes are dark but not black
    direct = np.maximum(illum, 0) * _smoothstep(illum, f32(0.02), f32(0.25))
    topo = f32(0.22) + f32(0.78) * direct / sz
    del illum, direct, norm

    # land cover (static across years)
    vig = plan.vigour.grid(r0, r1, c0, c1)
    tex = plan.texture.grid(r0, r1, c0, c1)
    patch = plan.patch.grid(r0, r1, c0, c1)
    v = np.clip(f32(0.62) + f32(0.22) * vig + f32(0.25) * northness
                - f32(0.25) * _smoothstep(zc, f32(plan.rock_level - 100), f32(plan.rock_level + 150)), 0, 1)
    del vig, northness
    texture = f32(1.0) + f32(0.13) * tex
    rock = np.clip(_smoothstep(zc, f32(plan.rock_level - 20), f32(plan.rock_level + 60))
                   * _smoothstep(tan_slope, f32(0.5), f32(0.9)) * (f32(0.6) + f32(0.8) * patch), 0, 1)
    del tan_slope, zc
    dense, sparse = _colour("forest_dense", bands), _colour("forest_sparse", bands)

    field_lab = None
    if len(plan.fields):
        win = box(plan.ox + c0 * px, plan.oy - r1 * px, plan.ox + c1 * px, plan.oy - r0 * px)
        hit = np.sort(plan.fields_tree.query(win, predicate="intersects"))
        if len(hit):
            field_lab = _rasterize([(plan.fields[i], int(i) + 1) for i in hit], out_shape=(h, w),
                                  transform=_window_transform(plan, r0, c0), fill=0, dtype="int32")
            if not field_lab.any():
                field_lab = None

    water = bars = None
    if d_river is not None:
        bank = plan.river_hw * (f32(1.0) + f32(0.25) * patch)
        water = np.clip((bank - d_river) / f32(px) + f32(0.5), 0, 1)
        bar_zone = (d_river < bank + f32(22.0)) & (d_river > bank * f32(0.55))
        bars = np.where(bar_zone, _smoothstep(patch, f32(0.1), f32(0.5)), f32(0.0))
        bars = np.maximum(bars, _smoothstep(patch, f32(0.9), f32(1.3)) * (water > 0))
        water = water * (f32(1.0) - bars)
        if not water.any() and not bars.any():
            water = bars = None
    road = None
    road_halo = int(math.ceil(plan.road_hw / px)) + 3
    if _near(plan.road, r0, r1, c0, c1, plan.road_hw + 3 * px, plan):
        d_road = _edt_distance(plan.road, r0, r1, c0, c1, road_halo, plan)
        road = np.clip(f32(plan.road_hw / px + 0.5) - d_road, 0, 1)
        if not road.any():
            road = None

    out = {}
    win_tr = _window_transform(plan, r0, c0)
    win = box(plan.ox + c0 * px, plan.oy - r1 * px, plan.ox + c1 * px, plan.oy - r0 * px)
    rowsi = np.arange(r0, r1)
    colsi = np.arange(c0, c1)
    river_px = None if bars is None else np.nonzero((bars > 0) | (water > 0))
    road_px = None if road is None else np.nonzero(road > 0)
    for year in years:
        yr = plan.years[year]
        phen = np.ones(nb, np.float32)
        phen[2] = yr.phen_r
        phen[-1] = yr.phen_nir
        if nb == 5:
            phen[3] = 0.5 * (1 + yr.phen_nir)
        phen = phen[:, None, None]
        veg = (sparse + (dense - sparse) * v) * phen * texture
        img = veg + (_colour("rock", bands) * (f32(0.9) + f32(0.15) * patch) - veg) * rock
        if field_lab is not None:
            state = plan.field_state[year]
            lut = np.zeros((nb, len(plan.fields) + 1), np.float32)
            colours = [_colour("crop", bands) * phen, _colour("grass", bands) * phen, _colour("bare_field", bands)]
            for st in range(3):
                lut[:, np.flatnonzero(state == st) + 1] = colours[st][:, 0]
            m = np.nonzero(field_lab)
            img[:, m[0], m[1]] = lut[:, field_lab[m]] * (f32(1.0) + f32(0.05) * tex[m])
        # landslide scars, burned from exactly the truth polygons
        items, geoms, tree = plan.render_parts(year)
        if items:
            hit = np.sort(tree.query(win, predicate="intersects"))
            if len(hit):
                lab = _rasterize([(geoms[i], int(i) + 1) for i in hit], out_shape=(h, w), transform=win_tr,
                                fill=0, dtype="int32")
                m = np.nonzero(lab)
                if len(m[0]):
                    n_it = len(items) + 1
                    rec = np.zeros(n_it, np.float32)
                    bright = np.ones(n_it, np.float32)
                    nirf = np.ones(n_it, np.float32)
                    axis = np.zeros((4, n_it), np.float64)
                    axis[3] = 1.0
                    for i in hit:
                        rec[i + 1] = items[i][0]
                        bright[i + 1] = items[i][3].brightness
                        nirf[i + 1] = items[i][3].nir_factor
                        axis[:, i + 1] = items[i][4].axis
                    lm = lab[m]
                    # position along the slope: -1 at the crown (fresh, bright scarp), +1 at
                    # the toe (darker deposit mixed with uprooted vegetation)
                    xm = plan.ox + (m[1] + c0 + 0.5) * px
                    ym = plan.oy - (m[0] + r0 + 0.5) * px
                    u = ((xm * axis[0, lm] + ym * axis[1, lm] - axis[2, lm]) / axis[3, lm]).astype(np.float32)
                    u = np.minimum(np.maximum(u, f32(-1)), f32(1))
                    shade = f32(1.0) - f32(0.12) * u + f32(0.08) * tex[m] + f32(0.05) * patch[m]
                    scar = _colour("scar", bands)[:, :, 0] * bright[lm] * shade
                    scar[-1] *= nirf[lm]
                    if nb == 5:
                        scar[3] *= f32(0.5) + f32(0.5) * nirf[lm]
                    under = veg[:, m[0], m[1]]
                    mix = rec[lm] + (f32(1.0) - rec[lm]) * f32(0.1) * np.maximum(u, f32(0))
                    img[:, m[0], m[1]] = scar + (under - scar) * mix
        if river_px is not None:
            ii, jj = river_px
            sub = img[:, ii, jj]
            b_, w_ = bars[ii, jj], water[ii, jj]
            sub += (_colour("gravel", bands)[:, :, 0] * (f32(0.92) + f32(0.1) * tex[ii, jj]) - sub) * b_
            sub += (_colour("water", bands)[:, :, 0] * (f32(1.0) + f32(0.04) * patch[ii, jj]) - sub) * w_
            img[:, ii, jj] = sub
        if road_px is not None:
            ii, jj = road_px
            sub = img[:, ii, jj]
            img[:, ii, jj] = sub + (_colour("road", bands)[:, :, 0] - sub) * road[ii, jj]
        img *= topo
        # radiometry of the acquisition: gain, offset, haze
        if yr.haze > 0.01:
            haze = f32(yr.haze) * (f32(0.6) + f32(0.4) * plan.haze_noise.grid(r0, r1, c0, c1))
            img *= yr.gain[:, None, None] * (f32(1.0) - f32(0.08) * haze)
            path_radiance = np.asarray([_HAZE[b] for b in bands], np.float32)[:, None, None]
            img += yr.offset[:, None, None] + path_radiance * haze
        else:
            img *= yr.gain[:, None, None]
            img += yr.offset[:, None, None]
        # clouds and their shadows (the shadow falls away from the sun)
        if yr.clouds:
            dr, dc = yr.shadow_shift
            shadow = _cloud_opacity(plan, yr, r0 + dr, r1 + dr, c0 + dc, c1 + dc)
            if shadow is not None:
                img *= f32(1.0) - f32(0.6) * shadow
            op = _cloud_opacity(plan, yr, r0, r1, c0, c1)
            if op is not None:
                puff = plan.cloud_noise.grid(r0 + 7, r1 + 7, c0 + 7, c1 + 7)  # shifted: not the edge noise
                cloud = _colour("cloud", bands) * (f32(0.9) + f32(0.1) * puff)
                img += (cloud - img) * op
        # sensor noise from a per-pixel hash: independent of the block layout
        key = _key(spec.seed, "noise", year)
        h1 = _hash2d(rowsi, colsi, key)
        h2 = _mix(h1 ^ np.uint64(0xD1B54A32D192ED03))
        mask12 = np.uint64(0xFFF)
        for b in range(nb):
            sh = np.uint64(12 * b)
            u = ((h1 >> sh) & mask12).astype(np.float32) + ((h2 >> sh) & mask12).astype(np.float32)
            u -= f32(4095.0)
            u *= f32(1.0 / 4096.0)  # triangular on (-1, 1), std 0.41
            img[b] += u * (f32(20.0) + f32(0.02) * img[b])
        np.rint(img, out=img)
        np.maximum(img, f32(1.0), out=img)
        np.minimum(img, f32(65535.0), out=img)
        arr = img.astype(np.uint16)
        nd = _nodata_mask(plan, yr, r0, r1, c0, c1)
        if nd is not None:
            arr[:, nd] = 0
        out[year] = arr
    return out


# -------------------------------------------------------------------- generation


def _raster_path(directory: Path, year: int) -> Path:
    return directory / f"scene_{year}.tif"


def generate_scene(directory: str | os.PathLike, spec: SceneSpec, progress: ProgressFn | None = None, *,
                   years: Sequence[int] | None = None, block_size: int = DEFAULT_BLOCK,
                   workers: int | None = None) -> SceneManifest:
    """Write ``scene_<year>.tif`` per year, ``truth.gpkg`` and ``scene.json`` into ``directory``.

    ``years`` restricts the rasters written (e.g. a single year for benchmarks); the
    truth always covers all of ``spec.years``.  ``block_size`` changes memory use
    and nothing else: pixels do not depend on it.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    spec.validate()
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    years = list(spec.years if years is None else years)
    unknown = [y for y in years if y not in spec.years]
    if unknown:
        raise InputError(f"Years {unknown} are not in the scene's years {list(spec.years)}.")
    block_size = max(16, int(block_size))
    report = progress or (lambda f, m: None)
    report(0.0, "Planning terrain, rivers and landslides")
    plan = plan_scene(spec)
    _remove_outputs(directory, spec.years)

    report(0.05, "Writing truth polygons")
    layers = plan.truth()
    write_geopackage(directory / TRUTH_NAME, layers)

    names = spec.band_names()
    profile = dict(driver="GTiff", width=spec.size, height=spec.size, count=len(names), dtype="uint16",
                   crs=f"EPSG:{spec.epsg}", transform=from_origin(plan.ox, plan.oy, plan.px, plan.px),
                   nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                   zlevel=6, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", interleave="pixel")
    partial = {y: Path(str(_raster_path(directory, y)) + ".partial") for y in years}
    blocks = [(r, min(r + block_size, spec.size), c, min(c + block_size, spec.size))
              for r in range(0, spec.size, block_size) for c in range(0, spec.size, block_size)]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    dsts = {}
    try:
        with rasterio.Env(GDAL_CACHEMAX=256 * 2**20):  # bytes, as rasterio passes it on
            for y in years:
                dsts[y] = rasterio.open(partial[y], "w", **profile)
                for i, n in enumerate(names, 1):
                    dsts[y].set_band_description(i, n)
                dsts[y].update_tags(YEAR=str(y), SENSOR=spec.resolved_sensor(), SCALE="reflectance x 10000",
                                    GENERATOR=f"landslide_mapper demo_scene v{GENERATOR_VERSION} seed {spec.seed}")
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pending = []
                todo = iter(blocks)
                done = 0

                def submit():
                    b = next(todo, None)
                    if b is not None:
                        pending.append((b, pool.submit(render_block, plan, *b, years)))

                for _ in range(workers + 1):
                    submit()
                while pending:
                    (r0, r1, c0, c1), fut = pending.pop(0)
                    arrays = fut.result()
                    submit()
                    for y, arr in arrays.items():
                        dsts[y].write(arr, window=Window(c0, r0, c1 - c0, r1 - r0))
                    done += 1
                    report(0.05 + 0.93 * done / len(blocks), f"Rendered block {done}/{len(blocks)}")
            for y in years:
                dsts[y].close()
        for y in years:
            os.replace(partial[y], _raster_path(directory, y))
    except BaseException:
        for ds in dsts.values():
            try:
                ds.close()
            except Exception:
                pass
        # the previous scene is already gone: leave no half scene behind either
        for p in list(partial.values()) + [directory / TRUTH_NAME]:
            if p.exists():
                p.unlink()
        raise

    manifest = SceneManifest(
        directory=str(directory),
        spec=spec,
        rasters={y: str(_raster_path(directory, y)) for y in years},
        truth_path=str(directory / TRUTH_NAME),
        band_names=names,
        true_powerlaw_alpha=float(spec.powerlaw_alpha),
        landslide_counts={y: len(layers[landslides_layer(y)]) for y in spec.years},
        new_counts={y: len(layers[changes_layer(y)]) for y in spec.years},
        footprints={y: plan.years[y].footprint.wkt for y in spec.years},
    )
    tmp = directory / (SCENE_JSON + ".partial")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, directory / SCENE_JSON)
    report(1.0, "Demo scene ready")
    return manifest


def _remove_outputs(directory: Path, years: Iterable[int]) -> None:
    """Delete a previous scene's files (only the names this module writes)."""
    old = directory / SCENE_JSON
    targets = {directory / TRUTH_NAME, old}
    targets |= {_raster_path(directory, y) for y in years}
    if old.exists():
        try:
            targets |= {Path(p) for p in SceneManifest.load(directory).rasters.values()}
        except Exception:
            pass
    for p in targets:
        if p.exists() and p.parent == directory:
            p.unlink()


def load_or_generate(directory: str | os.PathLike, spec: SceneSpec, progress: ProgressFn | None = None,
                     **kwargs) -> SceneManifest:
    """Reuse the scene in ``directory`` if it was made from exactly ``spec``, else generate it."""
    directory = Path(directory)
    try:
        m = SceneManifest.load(directory)
    except Exception:
        m = None
    if m is not None and m.generator_version == GENERATOR_VERSION and m.spec.to_dict() == spec.to_dict() \
            and Path(m.truth_path).exists() and set(m.rasters) >= set(kwargs.get("years") or spec.years) \
            and all(Path(p).exists() for p in m.rasters.values()):
        if progress:
            progress(1.0, "Reusing the existing demo scene")
        return m
    return generate_scene(directory, spec, progress, **kwargs)


def cloud_cover_polygons(spec: SceneSpec, year: int, opacity: float = 0.5):
    """Where clouds hide the ground in ``year`` (opacity above ``opacity``), as one geometry.

    The truth keeps landslides under clouds (a mapper should report them as unseen, not
    absent); training labels must not, or a network learns that clouds are landslides."""
    import rasterio.features
    from shapely.geometry import shape

    plan = plan_scene(spec)
    yr = plan.years[int(year)]
    cover = _cloud_opacity(plan, yr, 0, plan.size, 0, plan.size)
    if cover is None:
        return shapely.Polygon()
    mask = (cover > opacity).astype(np.uint8)
    parts = [shape(g) for g, v in rasterio.features.shapes(mask, mask=mask.astype(bool),
                                                            transform=_window_transform(plan, 0, 0)) if v]
    return shapely.union_all(parts) if parts else shapely.Polygon()
