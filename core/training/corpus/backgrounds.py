"""Real imagery used as the ground of training and benchmark scenes.

The backgrounds are other people's data (``../shared/data`` in a checkout, or the folder
named by ``LANDSLIDE_MAPPER_DATA``); nothing here is shipped with the plugin. Each entry
says how its digital numbers become surface reflectance (approximately: what matters is
that fields, forest, rock and water land where PlanetScope surface reflectance puts them)
and how its texture is resampled to the sensors we serve.

Resampling ("texture scale"). The mountain scenes are 10-30 m pixels, the sensors we serve
3-5 m. Upsampling a 30 m image tenfold gives a smooth image on which any crisp composited
scar would stand out by sharpness alone. Instead each background is upsampled by a small
factor ``upsample`` (cubic) and its pixels are then *declared* to be the sensor's pixel
size: the ground's texture appears at ``texture_scale`` of its true size (mountain relief is
roughly self-similar, so it still looks like terrain), while landslide outlines, which
are real shapes in metres, are burned at the declared pixel size, so a landslide covers
as many pixels as it would in real 3 m or 5 m imagery. The NAIP tile (5 m) is resampled
to 3 m at its true scale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from scipy import ndimage

from .scars import noise
from ..augment import WARM_COOL
from ...geodata.bands import ndvi
from ...geodata.raster import compose
from ...errors import InputError

DATA_ENV = "LANDSLIDE_MAPPER_DATA"
BANDS = ("B", "G", "R", "NIR")   # order of every array this module returns


@dataclass(frozen=True)
class Background:
    """One real image (or yearly series of images) of the same ground.

    ``order``: for each of B, G, R, NIR, the 1-based band of the files. Reflectance is
    ``(DN - offset) * gain`` per band, with ``offset`` given, or (``None``) a dark-object
    value: the band's 0.5th percentile minus ``dark_floor`` / ``gain``.
    """

    key: str
    files: tuple[str, ...]          # relative to the data root; several = real yearly images
    order: tuple[int, int, int, int]
    gain: float
    offset: float | None
    native_m: float
    description: str
    license: str
    dark_floor: float = 0.02
    nodata: float | None = None

    def upsample(self, pixel_size: float) -> float:
        """Resampling factor for a sensor of ``pixel_size`` metres (see the module note)."""
        if self.native_m <= 5.0:      # already sub-5 m texture: resample at the true scale
            return self.native_m / pixel_size
        return 2.0 if self.native_m <= 10.0 else 3.0

    def texture_scale(self, pixel_size: float) -> float:
        """Size of ground features in the scene relative to their true size."""
        return pixel_size * self.upsample(pixel_size) / self.native_m


BACKGROUNDS: dict[str, Background] = {b.key: b for b in (
    Background(
        "naip", tuple(f"naip_multiyear/m_4709963_se_14_1_{d}.tif" for d in
                      ("20090818", "20100629", "20120731", "20140720", "20150926", "20160816", "20170827")),
        order=(3, 2, 1, 4), gain=1 / 500, offset=None, native_m=5.0, nodata=0,
        description="NAIP aerial, North Dakota, 7 real years: cropland, bare fields, ponds, roads, farms",
        license="US public domain (NAIP), repository MIT"),
    Background(
        "dolomites", ("mountain_backgrounds/dolomites_s2l2a_20220600_BGRN_10m.tif",),
        order=(1, 2, 3, 4), gain=1 / 10000, offset=1000.0, native_m=10.0, nodata=0,
        description="Sentinel-2 L2A, Tofane/Cortina (Alps): forest on steep slopes, scree, debris "
                    "channels, bare rock, a town, some cloud",
        license="contains modified Copernicus Sentinel data 2022"),
    Background(
        "zion", ("mountain_backgrounds/zion_LC80380342015230_BGRN_30m.tif",),
        order=(1, 2, 3, 4), gain=2e-5, offset=None, native_m=30.0, nodata=65535,
        description="Landsat 8, Zion (Utah): canyons, plateau forest, bare sandstone, river, roads",
        license="USGS public domain"),
    Background(
        "everest", ("mountain_backgrounds/everest_LE71400412000304_BGRN_30m.tif",),
        order=(1, 2, 3, 4), gain=1 / 700, offset=None, native_m=30.0,
        description="Landsat 7, Everest/Khumbu: glaciers, moraine, rock, snow, little vegetation",
        license="USGS public domain"),
)}


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding the real data: ``explicit``, ``$LANDSLIDE_MAPPER_DATA``, or the
    checkout's ``../shared/data``."""
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def missing_files(keys, root: str | os.PathLike | None = None) -> list[str]:
    """Files of the named backgrounds that are not present (for skips and messages)."""
    base = data_root(root)
    return [str(base / f) for k in keys for f in BACKGROUNDS[k].files if not (base / f).is_file()]


def get(key: str) -> Background:
    if key not in BACKGROUNDS:
        raise InputError(f"Unknown background {key!r}; known: {', '.join(BACKGROUNDS)}.")
    return BACKGROUNDS[key]


@dataclass
class BackgroundImage:
    """Reflectance (4, H, W) float32 in B, G, R, NIR order on the scene's pixel grid."""

    reflectance: np.ndarray
    valid: np.ndarray
    crs: CRS
    origin: tuple[float, float]     # map x, y of the top-left corner
    source: str


def _to_reflectance(dn: np.ndarray, valid: np.ndarray, bg: Background) -> np.ndarray:
    out = np.empty(dn.shape, np.float32)
    for i in range(dn.shape[0]):
        band = dn[i].astype(np.float32)
        if bg.offset is not None:
            off = bg.offset
        else:
            v = band[valid]
            off = float(np.percentile(v, 0.5)) - bg.dark_floor / bg.gain if v.size else 0.0
        out[i] = np.clip((band - off) * bg.gain, 0.001, 1.2)
    return out


def load_background(key: str, year_index: int, pixel_size: float, crop: tuple[int, int, int, int] | None = None,
                    root: str | os.PathLike | None = None) -> BackgroundImage:
    """One year of a background as reflectance on the scene grid.

    ``year_index`` picks a real yearly image where the background has several (modulo their
    number); single-date backgrounds return the same image for every index. ``crop`` is
    ``(col, row, width, height)`` in *native* pixels of the first file; every yearly file is
    resampled onto that grid, so the real 1-3 m misregistration between years remains.
    """
    bg = get(key)
    base = data_root(root)
    first = base / bg.files[0]
    path = base / bg.files[year_index % len(bg.files)]
    if not path.is_file():
        raise InputError(f"Background {key}: {path} is missing (the real data lives in "
                         f"../shared/data or ${DATA_ENV}).")
    u = bg.upsample(pixel_size)
    with rasterio.open(first) as ref:
        col, row, w, h = crop if crop is not None else (0, 0, ref.width, ref.height)
        if col < 0 or row < 0 or col + w > ref.width or row + h > ref.height or w < 1 or h < 1:
            raise InputError(f"Background {key}: crop {crop} lies outside its {ref.width}×{ref.height} px.")
        crs = ref.crs
        win_transform = ref.window_transform(rasterio.windows.Window(col, row, w, h))
    out_w, out_h = int(round(w * u)), int(round(h * u))
    dst_transform = compose(win_transform, win_transform.scale(w / out_w, h / out_h))
    with rasterio.open(path) as src:
        dn = np.zeros((4, out_h, out_w), np.float32)
        ok = np.zeros((out_h, out_w), np.uint8)
        for i, b in enumerate(bg.order):
            reproject(rasterio.band(src, b), dn[i], dst_transform=dst_transform, dst_crs=crs,
                      resampling=Resampling.cubic, src_nodata=bg.nodata, dst_nodata=np.nan)
        # validity: nearest-neighbour footprint of the source's own nodata
        mask = (src.read_masks(1) > 0).astype(np.uint8)
        reproject(mask, ok, src_transform=src.transform, src_crs=src.crs, dst_transform=dst_transform,
                  dst_crs=crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=0)
    valid = (ok > 0) & np.all(np.isfinite(dn), axis=0)
    dn[:, ~valid] = 0.0
    refl = _to_reflectance(dn, valid, bg)
    refl[:, ~valid] = 0.0
    return BackgroundImage(refl, valid, crs, (win_transform.c, win_transform.f), str(path))


def native_size(key: str, root: str | os.PathLike | None = None) -> tuple[int, int]:
    """(width, height) of the background's first file in native pixels."""
    with rasterio.open(data_root(root) / get(key).files[0]) as src:
        return src.width, src.height


# Arid ground end-members, reflectance in B, G, R, NIR (approximate spectra of the kinds of
# ground that dry mountains expose: canyon country, badlands, steppe, lava fields).
ARID_GROUND = np.array([
    [0.090, 0.130, 0.240, 0.310],    # iron-stained red sandstone
    [0.190, 0.230, 0.280, 0.330],    # pale sandstone, limestone
    [0.110, 0.140, 0.180, 0.230],    # grey-brown desert soil, gravel
    [0.070, 0.100, 0.150, 0.250],    # dry grass and litter over soil
    [0.070, 0.080, 0.090, 0.120],    # dark varnished rock, basalt
], np.float32)


def vegetation_cover(r: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Share of a pixel under green vegetation, 0-1, ramping over NDVI 0.2-0.6."""
    return np.clip((ndvi(r, nir) - 0.2) / 0.4, 0, 1)


def water_mask(refl: np.ndarray) -> np.ndarray:
    """Open water in (B, G, R, NIR) reflectance: dark in NIR, or darker in NIR than in red."""
    r, nir = refl[2], refl[3]
    return (nir < 0.06) | (ndvi(r, nir) < -0.05) & (nir < 0.12)


def strip_vegetation(refl: np.ndarray, valid: np.ndarray, strength: float,
                     rng: np.random.Generator) -> np.ndarray:
    """The ground as it would look dry: vegetation and rock replaced by arid soil and rock.

    Only four real backgrounds are available, three of them green; a model trained on them
    learns "a bare patch in vegetated ground" and misses scars on bare ground. This keeps a
    background's relief (its broad shading and its local texture, both taken from the
    brightness of all four bands) and replaces its spectra by a mix of two arid
    end-members laid out as broad geological units, leaving scattered shrub clumps of the
    original vegetation and the water as it was. ``strength`` blends towards that look.
    Returns a new (4, H, W) array; deterministic for a given ``rng``.
    """
    if strength <= 0:
        return refl
    h, w = valid.shape
    b, g, r, nir = refl
    bright = refl.mean(0)
    med = float(np.median(bright[valid])) if valid.any() else 0.1
    broad = ndimage.gaussian_filter(bright, 12)
    local = np.clip(bright / np.maximum(ndimage.gaussian_filter(bright, 4), 1e-4), 0.4, 2.2)
    relief = (np.clip(broad / max(med, 1e-4), 0.2, 3.0) ** 0.5) * local ** float(rng.uniform(0.6, 1.0))
    pair = rng.choice(len(ARID_GROUND), 2, replace=False)
    units = np.clip(noise((h, w), rng, (80.0, 40.0)) * 0.8 + 0.5, 0, 1)[None]   # broad units, soft borders
    level = float(rng.uniform(0.8, 1.2))
    arid = (ARID_GROUND[pair[0]][:, None, None] * (1 - units) + ARID_GROUND[pair[1]][:, None, None] * units)
    arid = arid * level * relief[None]
    veg = vegetation_cover(r, nir)
    clumps = noise((h, w), rng, (1.5, 4.0)) > float(rng.uniform(0.8, 1.6))     # 5-20 % of the ground
    keep = veg * clumps * float(rng.uniform(0.3, 0.7))
    keep = np.where(water_mask(refl), 1.0, keep)[None]
    out = refl * keep + arid * (1 - keep)
    out = refl * (1 - strength) + out * strength
    out[:, ~valid] = 0.0
    return np.clip(out, 0.001, 1.2).astype(np.float32)


def tint(refl: np.ndarray, valid: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """The ground with its colour moved along the warm-cool axis (red up and blue down, or
    the reverse, green half-way), by a log-normal amount of ``spread``, plus a small gain of
    its own per band and an overall brightness.

    The training grounds' colours are few (bluish Alpine forest, green crops, brown
    moraine); a model then leans on the ground's absolute colour, and on ground of another
    colour (the brown-red shrubland of a Landsat plateau) it missed most scars. Tinting the
    ground alone, before the scars are burned in, varies the ground's colour and the
    scars' colour contrast to it (a scar's brightness still follows its ground's in part).
    The axis is ``augment.WARM_COOL``.
    """
    if spread <= 0:
        return refl
    warm = rng.normal(0.0, spread)
    axis = np.array([WARM_COOL[b] for b in ("B", "G", "R", "NIR")])
    log_gain = warm * axis + rng.normal(0.0, spread / 4, 4) + rng.normal(0, spread / 2)
    out = refl * np.exp(log_gain).astype(np.float32)[:, None, None]
    out[:, ~valid] = 0.0
    return np.clip(out, 0.001, 1.2).astype(np.float32)
