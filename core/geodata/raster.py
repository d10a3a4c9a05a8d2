"""One year's image opened for windowed reads of the model's spectral channels.

Nothing here reads a whole raster: every access is a window, so memory stays flat
whatever the raster size. Masks from nodata values, alpha bands, per-dataset masks and
NaNs are combined into one validity mask per window.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from . import crs as crs_rules
from .bands import CHANNEL_WORDS, BandMapping, guess_mapping
from ..mapping.bundled import RGB_ADVICE
from ..errors import InputError

Log = Callable[[str], None]


def apply_transform(transform, x, y):
    """``transform`` (an affine.Affine) applied to x, y (numbers or arrays) by its
    coefficients: newer affine deprecates ``transform * (x, y)`` for ``@``, which the
    affine of Debian 12 lacks. ``~transform`` maps map coordinates to pixels."""
    t = transform
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def compose(outer, inner):
    """The affine ``outer`` after ``inner`` (``inner`` maps first): affine 3 warns on ``*``
    between transforms and wants ``@``, which Debian 12's affine 2.4 lacks."""
    matmul = getattr(type(outer), "__matmul__", None)
    return matmul(outer, inner) if matmul is not None else outer * inner


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
        self.who = f"Year {self.year}: " if self.year else ""      # training images may have no year
        self.nodata = None if nodata is None else float(nodata)     # the user's, besides the file's own
        log = log or (lambda _msg: None)
        if not Path(self.path).exists():
            raise InputError(f"{self.who}the raster file {self.path} does not exist.")
        if Path(self.path).is_dir():
            raise InputError(f"{self.who}{self.path} is a folder, not a raster file.")
        try:
            # Opened outside any GDAL_NUM_THREADS setting on purpose: GDAL reads it at open
            # time, and with several decoding threads a truncated block reads as zeros
            # instead of failing (tests/core/test_hostile_input.py, "truncated tif").
            with warnings.catch_warnings():            # an image without georeferencing is said below
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.src = rasterio.open(self.path)
        except RasterioIOError as exc:
            raise InputError(f"{self.who}{self.path} is not a raster GDAL can read ({exc}).") from None
        try:
            self._setup(bands, reflectance_scale, target_crs, log, resolution)
        except BaseException:
            self.src.close()
            raise
        # what reopens it elsewhere (a Dask worker) as it is now, guesses settled
        self._recipe = dict(path=self.path, year=self.year, bands=self.mapping, reflectance_scale=self.scale,
                            target_crs=target_crs, resolution=resolution, nodata=nodata)

    def _setup(self, bands, reflectance_scale, target_crs, log: Log, resolution: float | None = None) -> None:
        src = self.src
        if src.crs is None and src.transform.is_identity and not src.gcps[0]:
            raise InputError(
                f"{self.who}{self.path} is a {src.driver} image without any georeferencing (no coordinate "
                "reference system, no position on the ground): it is not a map. Use the georeferenced image "
                "(e.g. the satellite product's GeoTIFF), or georeference it first (QGIS: Raster > Georeferencer).")
        if src.crs is None:
            raise InputError(
                f"{self.who}{self.path} has no coordinate reference system; assign one "
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
                    f"{self.who}{self.path} has {src.count} band(s), but the band mapping "
                    f"{self.mapping.describe()} needs band {idx} for {channel}."
                    + (f" {RGB_ADVICE}" if channel == "NIR" and src.count <= 3 else ""))
            if src.colorinterp[idx - 1] == ColorInterp.alpha:
                raise InputError(
                    f"{self.who}band {idx} of {self.path} is an alpha (transparency) band, "
                    f"not {channel}; the file has only {src.count - 1} spectral band(s).")
        self.scale = float(reflectance_scale) if reflectance_scale is not None else _default_scale(src, self.path, log)
        if self.nodata is not None and src.nodata is not None and src.nodata != self.nodata:
            log(f"{self.who}{self.path} declares nodata {src.nodata:g}; pixels of {self.nodata:g} "
                "are left out as well.")
        if self.scale <= 0:
            raise InputError(f"{self.who}reflectance scale must be positive, got {self.scale}.")
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
        """Read only the pixels of ``aoi`` (core.geodata.area.AreaOfInterest, in this raster's CRS):
        the grid shrinks to the window around it, and pixels outside its polygons read as
        invalid."""
        window = aoi.window(self.dataset.transform, self.dataset.width, self.dataset.height)
        if window is None:
            raise InputError(f"{self.who}{self.path} does not overlap {what} ({aoi.description}); "
                             "choose an area inside the image, or map the whole image.")
        self._window, self._aoi = window, aoi

    def recipe(self) -> dict:
        """Picklable arguments from which :meth:`reopen` builds this raster again, clipped
        to the same area of interest, with nothing guessed or logged a second time."""
        return {**self._recipe, "aoi": self._aoi}

    @classmethod
    def reopen(cls, recipe: dict) -> "YearRaster":
        args = dict(recipe)
        aoi = args.pop("aoi")
        raster = cls(**args)
        if aoi is not None:
            raster.clip(aoi)
        return raster

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
                f"{self.who}the model needs {', '.join(CHANNEL_WORDS.get(c, c) for c in missing)}, but the band "
                f"mapping for {self.path} ({self.mapping.describe()}) has none. Choose a mapping "
                "that includes them." + (f" {RGB_ADVICE}" if "NIR" in missing else ""))
        return [mapping[ch] for ch in spectral]

    def read(self, window: Window, spectral: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Reflectance arrays (float32) for ``spectral`` channels, and the valid-pixel mask."""
        data, valid = self.read_raw(window, spectral)
        return self.reflectance(data.astype(np.float32), valid, spectral)

    def read_raw(self, window: Window, spectral: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The file's own values of the bands ``spectral`` comes from (one each, in band order)
        and the valid-pixel mask; :meth:`reflectance` turns them into channels. Apart, so
        that a reader can keep rows it will need again undecoded and small."""
        unique = sorted(set(self.source_indexes(spectral)))
        window = self._in_dataset(window)
        try:
            data = self.dataset.read(unique, window=window)
            valid = self._valid(data, unique, window)
        except RasterioIOError as exc:
            raise InputError(f"{self.who}reading {self.path} failed; the file may be truncated "
                             f"or corrupt ({exc}).") from None
        return data, valid

    def reflectance(self, values: np.ndarray, valid: np.ndarray,
                    spectral: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Channels from :meth:`read_raw`'s values cast to float32 (scaled in place) and its
        mask (non-finite values made invalid, in place)."""
        idx = self.source_indexes(spectral)
        unique = sorted(set(idx))
        valid &= np.all(np.isfinite(values), axis=0)
        values /= np.float32(self.scale)
        pos = {band: i for i, band in enumerate(unique)}
        return {ch: values[pos[i]] for ch, i in zip(spectral, idx)}, valid

    @property
    def block_rows(self) -> int:
        """Rows of the file's blocks (tiles or strips) of its first band."""
        shapes = self.dataset.block_shapes
        return shapes[0][0] if shapes else 1

    def block_row_end(self, row: int) -> int:
        """The first row (of this grid) after the file's block row holding ``row``, at most
        the height: reading down to it decodes whole blocks only."""
        block = self.block_rows
        off = 0 if self._window is None else int(self._window.row_off)
        return min(self.height, ((row + off) // block + 1) * block - off)

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

    def inspect(self, spectral: Sequence[str]) -> list[str]:
        """Warnings about suspicious but valid content, from a sample of up to 16 windows of
        256 px spread over the image: mostly nodata, values far beyond the reflectance
        scale, and large areas of exact zeros or of one constant value in an image that
        declares no nodata (padding, probably)."""
        step, size = 256, 256
        cols = np.linspace(0, max(0, self.width - size), 4).astype(int)
        rows = np.linspace(0, max(0, self.height - size), 4).astype(int)
        values, valids = [], []
        for r in sorted(set(rows)):
            for c in sorted(set(cols)):
                win = Window(int(c), int(r), min(step, self.width - int(c)), min(step, self.height - int(r)))
                channels, valid = self.read(win, spectral)
                values.append(np.stack([channels[ch] for ch in spectral]).reshape(len(spectral), -1))
                valids.append(valid.reshape(-1))
        if not values:
            return []
        x, valid = np.concatenate(values, axis=1), np.concatenate(valids)
        out = []
        name = f"{self.who}{self.path}"
        if valid.mean() < 0.5:
            out.append(f"{name}: about {100 * (1 - valid.mean()):.0f} % of the image holds no data (nodata or "
                       "masked); only the rest is mapped.")
        x = x[:, valid]
        if not x.shape[1]:
            return out
        high = float(np.percentile(x, 99.5))
        if high > 1.5:
            out.append(f"{name}: values up to about {high * self.scale:,.0f} are read as reflectance {high:.1f} "
                       f"(reflectance 1.0 = {self.scale:g}); is the reflectance scale right (option "
                       "reflectance scale), and is this surface reflectance at all?")
        declares = (self.nodata is not None or self._alpha is not None or any(
            MaskFlags.all_valid not in f for f in self.dataset.mask_flag_enums))
        if not declares:
            zeros = float(np.mean(np.all(x == 0, axis=0)))
            if zeros >= 0.05:
                out.append(f"{name}: {100 * zeros:.0f} % of the pixels are exactly 0 in every band and the image "
                           "declares no nodata: probably padding around the data, which would be mapped as ground. "
                           "Set the nodata value to 0 (option nodata).")
            else:
                sample = x[:, :: max(1, x.shape[1] // 50000)]
                uniq, counts = np.unique(sample, axis=1, return_counts=True)
                top = int(np.argmax(counts))
                if counts[top] / sample.shape[1] >= 0.1:
                    raw = ", ".join(f"{v * self.scale:g}" for v in uniq[:, top])
                    out.append(f"{name}: {100 * counts[top] / sample.shape[1]:.0f} % of the pixels have the same "
                               f"value ({raw}) in every band and the image declares no nodata: probably a fill. "
                               "Set it as the nodata value (option nodata) if it is not ground.")
        px = math.sqrt(self.pixel_area)
        if not 0.05 <= px <= 100:
            out.append(f"{name}: pixels of {px:.3g} m are implausible for landslide mapping (the models are trained "
                       "on 0.8-5 m); check the image's CRS and geotransform.")
        return out

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


def target_crs_for(path: str, log: Log | None = None) -> CRS | None:
    """The CRS every year is mapped in: the first year's, unless its areas would be wrong."""
    log = log or (lambda _msg: None)
    try:
        with rasterio.open(path) as src:
            crs, bounds = src.crs, src.bounds
    except RasterioIOError as exc:
        raise InputError(f"{path} is not a raster GDAL can read ({exc}).") from None
    if crs is None:          # YearRaster says what is wrong with it
        return None
    problem = crs_rules.metric_problem(crs)
    if problem is None:
        return crs
    utm = crs_rules.utm_for_bounds(crs, bounds, path)
    log(f"{path} is {crs_rules.describe(crs)}, {problem}: mapping in {crs_rules.describe(utm)} "
        "so that areas in m² are right.")
    return utm
