"""One year's image opened for windowed reads of the model's spectral channels.

Nothing here reads a whole raster: every access is a window, so memory stays flat
whatever the raster size. Masks from nodata values, alpha bands, per-dataset masks and
NaNs are combined into one validity mask per window.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from . import crs as crs_rules
from .bands import BandMapping, guess_mapping
from .bundled import RGB_ADVICE
from .errors import InputError

Log = Callable[[str], None]


def _default_scale(src, path: str, log: Log) -> float:
    """Value of reflectance 1.0 in the file's units (Planet SR: 10,000)."""
    dtype = np.dtype(src.dtypes[0])
    if dtype == np.uint8:
        log(f"{path}: 8-bit data, taking 255 as reflectance 1.0 (override with reflectance_scale).")
        return 255.0
    if dtype.kind in "iu":
        return 10000.0
    h, w = src.height, src.width
    f = max(1, math.ceil(max(h, w) / 256))
    sample = src.read(1, out_shape=(max(1, h // f), max(1, w // f)), masked=True)
    values = sample.compressed()
    values = values[np.isfinite(values)]
    scale = 10000.0 if values.size and np.percentile(values, 99) > 2.0 else 1.0
    log(f"{path}: floating-point data, taking {scale:g} as reflectance 1.0 (override with reflectance_scale).")
    return scale


class YearRaster:
    """A raster plus how to turn its bands into reflectance channels, in a target CRS."""

    def __init__(self, path: str | os.PathLike, year: int, bands: str | BandMapping = "auto",
                 reflectance_scale: float | None = None, target_crs: CRS | None = None,
                 log: Log | None = None, resolution: float | None = None, nodata: float | None = None):
        self.path = str(path)
        self.year = int(year)
        self.nodata = None if nodata is None else float(nodata)     # the user's, besides the file's own
        log = log or (lambda _msg: None)
        if not Path(self.path).exists():
            raise InputError(f"Year {year}: the raster file {self.path} does not exist.")
        if Path(self.path).is_dir():
            raise InputError(f"Year {year}: {self.path} is a folder, not a raster file.")
        try:
            self.src = rasterio.open(self.path)
        except RasterioIOError as exc:
            raise InputError(f"Year {year}: {self.path} is not a raster GDAL can read ({exc}).") from None
        try:
            self._setup(bands, reflectance_scale, target_crs, log, resolution)
        except BaseException:
            self.src.close()
            raise

    def _setup(self, bands, reflectance_scale, target_crs, log: Log, resolution: float | None = None) -> None:
        src = self.src
        if src.crs is None:
            raise InputError(
                f"Year {self.year}: {self.path} has no coordinate reference system; assign one "
                "(QGIS: Layer Properties > Source, or gdal_edit.py -a_srs) so areas can be measured.")
        interps = [ci.name for ci in src.colorinterp]
        if str(bands).lower() == "auto":
            self.mapping = guess_mapping(src.count, src.descriptions, interps)
            log(f"{self.path}: band mapping guessed {self.mapping.describe()}.")
        else:
            self.mapping = BandMapping.parse(bands)
        for channel, idx in self.mapping.bands:
            if idx > src.count:
                raise InputError(
                    f"Year {self.year}: {self.path} has {src.count} band(s), but the band mapping "
                    f"{self.mapping.describe()} needs band {idx} for {channel}."
                    + (f" {RGB_ADVICE}" if channel == "NIR" and src.count <= 3 else ""))
            if src.colorinterp[idx - 1] == ColorInterp.alpha:
                raise InputError(
                    f"Year {self.year}: band {idx} of {self.path} is an alpha (transparency) band, "
                    f"not {channel}; the file has only {src.count - 1} spectral band(s).")
        self.scale = float(reflectance_scale) if reflectance_scale else _default_scale(src, self.path, log)
        if self.nodata is not None and src.nodata is not None and src.nodata != self.nodata:
            log(f"Year {self.year}: {self.path} declares nodata {src.nodata:g}; pixels of {self.nodata:g} "
                "are left out as well.")
        if self.scale <= 0:
            raise InputError(f"Year {self.year}: reflectance scale must be positive, got {self.scale}.")
        self.dataset = src
        self._window: Window | None = None      # the part read when clipped to an area of interest
        self._aoi = None
        self.reprojected_from: str | None = None
        self.resampled_from: float | None = None
        self._alpha: int | None = None
        reproject = target_crs is not None and src.crs != target_crs
        if reproject or resolution:
            dst_crs = target_crs if reproject else src.crs
            # Without a nodata value the warp's fill outside the source footprint would read
            # as valid zeros: an alpha band marks it instead.
            has_alpha = ColorInterp.alpha in src.colorinterp
            kwargs = {}
            resampling = Resampling.bilinear
            if resolution:
                t, w, h = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds,
                                                      resolution=resolution)
                kwargs = dict(transform=t, width=w, height=h)
                t0, _, _ = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
                own = math.sqrt(abs(t0.a * t0.e - t0.b * t0.d))      # in the target CRS's units
                self.resampled_from = own
                # coarser pixels average the finer ones; finer pixels interpolate
                resampling = Resampling.average if resolution > own else Resampling.bilinear
            if self.nodata is not None and src.nodata is None:       # the warp must skip them too
                kwargs.update(src_nodata=self.nodata, nodata=self.nodata)
            self.dataset = WarpedVRT(src, crs=dst_crs, resampling=resampling,
                                     add_alpha=src.nodata is None and not has_alpha and self.nodata is None,
                                     **kwargs)
            if reproject:
                self.reprojected_from = crs_rules.describe(src.crs)
                log(f"{self.path}: reprojected on the fly from {self.reprojected_from} to "
                    f"{crs_rules.describe(target_crs)}.")
        # GDAL derives masks from 8/16-bit alpha bands only; honour any alpha band ourselves.
        alphas = [i for i, ci in enumerate(self.dataset.colorinterp, 1) if ci == ColorInterp.alpha]
        self._alpha = alphas[0] if alphas else None

    # -- geometry -------------------------------------------------------------------
    def clip(self, aoi, what: str = "the area of interest") -> None:
        """Read only the pixels of ``aoi`` (core.area.AreaOfInterest, in this raster's CRS):
        the grid shrinks to the window around it, and pixels outside its polygons read as
        invalid."""
        window = aoi.window(self.dataset.transform, self.dataset.width, self.dataset.height)
        if window is None:
            raise InputError(f"Year {self.year}: {self.path} does not overlap {what} ({aoi.description}); "
                             "choose an area inside the image, or map the whole image.")
        self._window, self._aoi = window, aoi

    @property
    def crs(self) -> CRS:
        return self.dataset.crs

    @property
    def transform(self):
        if self._window is None:
            return self.dataset.transform
        return self.dataset.window_transform(self._window)

    @property
    def width(self) -> int:
        return self.dataset.width if self._window is None else int(self._window.width)

    @property
    def height(self) -> int:
        return self.dataset.height if self._window is None else int(self._window.height)

    def window_transform(self, window: Window):
        return self.dataset.window_transform(self._in_dataset(window))

    def _in_dataset(self, window: Window) -> Window:
        """A window of this (possibly clipped) grid as a window of the dataset."""
        if self._window is None:
            return window
        return Window(window.col_off + self._window.col_off, window.row_off + self._window.row_off,
                      window.width, window.height)

    @property
    def pixel_area(self) -> float:
        t = self.transform
        return abs(t.a * t.e - t.b * t.d)

    # -- reading --------------------------------------------------------------------
    def source_indexes(self, spectral: Sequence[str]) -> list[int]:
        mapping = self.mapping.as_dict()
        missing = [ch for ch in spectral if ch not in mapping]
        if missing:
            raise InputError(
                f"Year {self.year}: the model needs channel(s) {', '.join(missing)}, but the band "
                f"mapping for {self.path} ({self.mapping.describe()}) has none. Choose a mapping "
                "that includes them." + (f" {RGB_ADVICE}" if "NIR" in missing else ""))
        return [mapping[ch] for ch in spectral]

    def read(self, window: Window, spectral: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Reflectance arrays (float32) for ``spectral`` channels, and the valid-pixel mask."""
        idx = self.source_indexes(spectral)
        unique = sorted(set(idx))
        window = self._in_dataset(window)
        try:
            data = self.dataset.read(unique, window=window)
            valid = self._valid(data, unique, window)
        except RasterioIOError as exc:
            raise InputError(f"Year {self.year}: reading {self.path} failed; the file may be truncated "
                             f"or corrupt ({exc}).") from None
        values = data.astype(np.float32)
        if values.dtype.kind == "f":
            valid &= np.all(np.isfinite(values), axis=0)
        values /= np.float32(self.scale)
        pos = {band: i for i, band in enumerate(unique)}
        return {ch: values[pos[i]] for ch, i in zip(spectral, idx)}, valid

    def _valid(self, data: np.ndarray, bands: list[int], window: Window) -> np.ndarray:
        """Pixels valid in every band read.

        A nodata-value mask is computed from the pixels already read (asking GDAL for it
        would decode every band a second time); internal masks and alpha are read once.
        """
        valid = np.ones(data.shape[1:], bool)
        if self.nodata is not None:          # the user's nodata value, in any band read
            valid &= ~np.any(np.isnan(data) if math.isnan(self.nodata) else data == self.nodata, axis=0)
        flags = self.dataset.mask_flag_enums
        nodata = self.dataset.nodatavals
        to_read = []
        for i, b in enumerate(bands):
            f = flags[b - 1]
            if MaskFlags.all_valid in f:
                continue
            if MaskFlags.nodata in f and nodata[b - 1] is not None:
                nd = nodata[b - 1]
                valid &= ~np.isnan(data[i]) if np.isnan(nd) else data[i] != np.array(nd).astype(data.dtype)
            else:
                to_read.append(b)
        if to_read:
            if all(MaskFlags.per_dataset in flags[b - 1] for b in to_read):
                to_read = to_read[:1]  # one mask for all bands: read it once
            valid &= np.all(self.dataset.read_masks(to_read, window=window) > 0, axis=0)
        if self._alpha is not None:
            valid &= self.dataset.read(self._alpha, window=window) > 0
        if self._aoi is not None:
            inside = self._aoi.mask(self.dataset.window_transform(window), valid.shape)
            if inside is not None:
                valid &= inside
        return valid

    def has_valid_pixels(self, spectral: Sequence[str]) -> bool:
        """Whether any pixel is valid: the centre window first, then the rest, stopping early.

        (Decimated mask reads look cheaper but take GDAL seconds per raster.)"""
        step, width, height = 1024, self.width, self.height
        windows = [Window(c, r, min(step, width - c), min(step, height - r))
                   for r in range(0, height, step) for c in range(0, width, step)]
        centre = len(windows) // 2
        for win in windows[centre:centre + 1] + windows[:centre] + windows[centre + 1:]:
            if self.read(win, spectral)[1].any():
                return True
        return False

    def close(self) -> None:
        if self.dataset is not self.src:
            self.dataset.close()
        self.src.close()

    def __enter__(self) -> "YearRaster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def target_crs_for(path: str, log: Log | None = None) -> CRS:
    """The CRS every year is mapped in: the first year's, unless its areas would be wrong."""
    log = log or (lambda _msg: None)
    try:
        with rasterio.open(path) as src:
            crs, bounds = src.crs, src.bounds
    except RasterioIOError as exc:
        raise InputError(f"{path} is not a raster GDAL can read ({exc}).") from None
    if crs is None:
        raise InputError(
            f"{path} has no coordinate reference system; assign one (QGIS: Layer Properties > "
            "Source, or gdal_edit.py -a_srs) so areas can be measured.")
    problem = crs_rules.metric_problem(crs)
    if problem is None:
        return crs
    utm = crs_rules.utm_for_bounds(crs, bounds)
    log(f"{path} is {crs_rules.describe(crs)}, {problem}: mapping in {crs_rules.describe(utm)} "
        "so that areas in m² are right.")
    return utm
