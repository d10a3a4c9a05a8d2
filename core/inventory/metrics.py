"""Pixel accuracy of predicted polygons against reference polygons on a raster grid.

Both inventories are rasterised window by window, so memory stays the same whatever the
extent. The grid is either a raster's (typically the year's probability raster: only its
valid, non-nodata pixels count, so nodata collars and clouds do not turn into false
negatives) or one laid out over given bounds at a given pixel size. An optional
assessment area limits the count to the pixels whose centre lies inside it.

A pixel belongs to a polygon when its centre does (GDAL's default rasterisation rule).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from affine import Affine
from rasterio.windows import Window

from ..geodata.raster import apply_transform

WINDOW = 1024


@dataclass
class PixelScores:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else float("nan")

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else float("nan")

    @property
    def mcc(self) -> float:
        tp, fp, fn, tn = (float(v) for v in (self.tp, self.fp, self.fn, self.tn))
        d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return (tp * tn - fp * fn) / d if d else float("nan")

    @property
    def total(self) -> int:
        """Pixels that were counted (valid and inside the assessment area)."""
        return self.tp + self.fp + self.fn + self.tn

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "iou": self.iou, "mcc": self.mcc}


@dataclass(frozen=True)
class Grid:
    """A pixel grid: affine transform and size in pixels."""

    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return rasterio.windows.bounds(Window(0, 0, self.width, self.height), self.transform)


def grid_for_bounds(bounds, pixel_size: float) -> Grid:
    """North-up grid of square ``pixel_size`` pixels covering ``bounds`` (minx, miny, maxx,
    maxy), its edges snapped outwards to multiples of the pixel size, so the grids of any
    two extents at the same pixel size share pixel edges."""
    if not pixel_size > 0 or not math.isfinite(pixel_size):
        raise ValueError(f"pixel size must be a positive number, not {pixel_size!r}")
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    left = math.floor(minx / pixel_size) * pixel_size
    bottom = math.floor(miny / pixel_size) * pixel_size
    right = math.ceil(maxx / pixel_size) * pixel_size
    top = math.ceil(maxy / pixel_size) * pixel_size
    width = max(0, int(round((right - left) / pixel_size)))
    height = max(0, int(round((top - bottom) / pixel_size)))
    return Grid(Affine(pixel_size, 0.0, left, 0.0, -pixel_size, top), width, height)


def as_geometry_array(geoms) -> np.ndarray:
    if geoms is None:
        return np.empty(0, dtype=object)
    if isinstance(geoms, shapely.Geometry):
        return np.array([geoms], dtype=object)
    return np.asarray(geoms, dtype=object).reshape(-1)


def _burn(tree: shapely.STRtree, geoms: np.ndarray, bounds, shape, transform) -> np.ndarray | None:
    """Pixels of the window whose centre lies in one of ``geoms``; None when none can."""
    box = shapely.box(*bounds)
    hits = tree.query(box)
    if not len(hits):
        return None
    g = geoms[hits]
    # Polygons reaching out of the window are cut to it (with a one-pixel margin, far from
    # any pixel centre): GDAL's scanline fill walks every edge on every row, so a large
    # detailed polygon would otherwise cost its full vertex count in every window.
    b = shapely.bounds(g)
    out = (b[:, 0] < bounds[0]) | (b[:, 1] < bounds[1]) | (b[:, 2] > bounds[2]) | (b[:, 3] > bounds[3])
    if out.any():
        px = max(abs(transform.a), abs(transform.e), abs(transform.b), abs(transform.d))
        g = g.copy()
        g[out] = shapely.clip_by_rect(g[out], bounds[0] - px, bounds[1] - px, bounds[2] + px, bounds[3] + px)
        g = g[~shapely.is_empty(g)]
        if not len(g):
            return None
    return rasterio.features.rasterize(((x, 1) for x in g), out_shape=shape, transform=transform,
                                       fill=0, dtype="uint8").astype(bool)


def _pixel_range(grid: Grid, area: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns (r0, r1, c0, c1) of the grid that the area's bounding box covers."""
    minx, miny, maxx, maxy = shapely.total_bounds(area)
    inv = ~grid.transform
    cols, rows = zip(*(apply_transform(inv, x, y) for x in (minx, maxx) for y in (miny, maxy)))
    r0 = max(0, int(math.floor(min(rows))))
    r1 = min(grid.height, int(math.ceil(max(rows))))
    c0 = max(0, int(math.floor(min(cols))))
    c1 = min(grid.width, int(math.ceil(max(cols))))
    return r0, max(r0, r1), c0, max(c0, c1)


def _windows(r0: int, r1: int, c0: int, c1: int) -> list[Window]:
    step = int(WINDOW)
    return [Window(c, r, min(step, c1 - c), min(step, r1 - r))
            for r in range(r0, r1, step) for c in range(c0, c1, step)]


def _confusion(grid: Grid, predicted, reference, area, reporter,
               read_valid: Callable[[Window], np.ndarray] | None, message: str) -> PixelScores:
    predicted, reference = as_geometry_array(predicted), as_geometry_array(reference)
    p_tree, r_tree = shapely.STRtree(predicted), shapely.STRtree(reference)
    r0, r1, c0, c1 = 0, grid.height, 0, grid.width
    a_tree = None
    if area is not None:
        area = as_geometry_array(area)
        area = area[~(shapely.is_missing(area) | shapely.is_empty(area))]
        if not len(area):
            r0 = r1 = c0 = c1 = 0
        else:
            a_tree = shapely.STRtree(area)
            r0, r1, c0, c1 = _pixel_range(grid, area)
    windows = _windows(r0, r1, c0, c1)
    tp = fp = fn = tn = 0
    for k, win in enumerate(windows):
        if reporter is not None:
            reporter.progress(k / len(windows), f"{message}: window {k + 1}/{len(windows)}")
        tf = rasterio.windows.transform(win, grid.transform)
        bounds = rasterio.windows.bounds(win, grid.transform)
        shape = (int(win.height), int(win.width))
        mask = None
        if a_tree is not None:
            mask = _burn(a_tree, area, bounds, shape, tf)
            if mask is None:
                continue
        if read_valid is not None:
            valid = read_valid(win)
            mask = valid if mask is None else mask & valid
        n = shape[0] * shape[1] if mask is None else int(np.count_nonzero(mask))
        if not n:
            continue
        p = _burn(p_tree, predicted, bounds, shape, tf)
        r = _burn(r_tree, reference, bounds, shape, tf)
        if p is None and r is None:
            tn += n
            continue
        p = np.zeros(shape, bool) if p is None else p
        r = np.zeros(shape, bool) if r is None else r
        if mask is not None:
            p &= mask
            r &= mask
        w_tp = int(np.count_nonzero(p & r))
        w_fp = int(np.count_nonzero(p)) - w_tp
        w_fn = int(np.count_nonzero(r)) - w_tp
        tp, fp, fn, tn = tp + w_tp, fp + w_fp, fn + w_fn, tn + n - w_tp - w_fp - w_fn
    if reporter is not None:
        reporter.progress(1.0, message)
    return PixelScores(tp, fp, fn, tn)


def _raster_valid(ds) -> Callable[[Window], np.ndarray]:
    floating = np.dtype(ds.dtypes[0]).kind == "f"

    def read_valid(win: Window) -> np.ndarray:
        valid = ds.read_masks(1, window=win) > 0
        if floating:  # NaN without a NaN nodata value is not a value either
            valid &= np.isfinite(ds.read(1, window=win))
        return valid

    return read_valid


def pixel_scores(grid_raster: str | os.PathLike, predicted: np.ndarray, reference: np.ndarray,
                 *, area=None, reporter=None) -> PixelScores:
    """Confusion counts of ``predicted`` vs ``reference`` polygons on the raster's valid pixels
    (optionally only those whose centre is inside the ``area`` polygon(s))."""
    with rasterio.open(grid_raster) as ds:
        grid = Grid(ds.transform, ds.width, ds.height)
        return _confusion(grid, predicted, reference, area, reporter, _raster_valid(ds),
                          "Pixel accuracy")


def pixel_scores_on_grid(grid: Grid, predicted, reference, *, area=None, reporter=None) -> PixelScores:
    """Confusion counts on every pixel of ``grid`` (optionally only those whose centre is
    inside the ``area`` polygon(s))."""
    return _confusion(grid, predicted, reference, area, reporter, None, "Pixel accuracy")
