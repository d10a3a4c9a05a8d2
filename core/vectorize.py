"""Landslide polygons from the 0/1 mask raster, with their attributes.

Polygonising runs on the raster band itself (GDAL's streaming line-by-line algorithm),
so it needs no full-size array; per-polygon mean probabilities are computed cell by
cell with one rasterisation and one ``bincount`` per cell.
"""
from __future__ import annotations

import os

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window

from .inference import PROB_NODATA
from .progress import Reporter
from .vector_io import VectorLayer

CELL = 1024


def polygonize(class_path: str | os.PathLike) -> np.ndarray:
    """Polygons (shapely array) of the pixels equal to 1, in map coordinates, 4-connected."""
    with rasterio.open(class_path) as ds:
        band = rasterio.band(ds, 1)
        geoms = [shapely.geometry.shape(g) for g, _ in rasterio.features.shapes(band, mask=band)]
    return np.array(geoms, dtype=object) if geoms else np.empty(0, dtype=object)


def _pixel_bounds(geoms: np.ndarray, transform: Affine, height: int, width: int) -> np.ndarray:
    """(row0, col0, row1, col1) pixel boxes of the geometries, clipped to the raster."""
    b = shapely.bounds(geoms)
    inv = ~transform
    xs = np.stack([b[:, 0], b[:, 2], b[:, 0], b[:, 2]], axis=1)
    ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], axis=1)
    cols, rows = inv * (xs, ys)
    out = np.stack([np.floor(rows.min(1)), np.floor(cols.min(1)),
                    np.ceil(rows.max(1)), np.ceil(cols.max(1))], axis=1).astype(np.int64)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, height)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, width)
    return out


def mean_probability(prob_path: str | os.PathLike, geoms: np.ndarray,
                     reporter: Reporter | None = None) -> np.ndarray:
    """Mean of the valid probability pixels whose centres fall in each polygon."""
    out = np.full(len(geoms), np.nan)
    if not len(geoms):
        return out
    with rasterio.open(prob_path) as ds:
        boxes = _pixel_bounds(geoms, ds.transform, ds.height, ds.width)
        cell_ids = (boxes[:, 0] // CELL) * (ds.width // CELL + 1) + boxes[:, 1] // CELL
        order = np.argsort(cell_ids, kind="stable")
        splits = np.flatnonzero(np.diff(cell_ids[order])) + 1
        groups = np.split(order, splits)
        for n, members in enumerate(groups):
            r0, c0 = boxes[members, 0].min(), boxes[members, 1].min()
            r1, c1 = boxes[members, 2].max(), boxes[members, 3].max()
            win = Window(c0, r0, max(1, c1 - c0), max(1, r1 - r0))
            prob = ds.read(1, window=win)
            labels = rasterio.features.rasterize(
                zip(geoms[members], range(1, len(members) + 1)), out_shape=prob.shape,
                transform=ds.window_transform(win), fill=0, dtype="int32")
            ok = prob != PROB_NODATA
            sums = np.bincount(labels[ok], weights=prob[ok], minlength=len(members) + 1)
            counts = np.bincount(labels[ok], minlength=len(members) + 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[members] = sums[1:] / counts[1:]
            if reporter is not None:
                reporter.progress((n + 1) / len(groups), "mean probability per polygon")
    return out


def landslide_polygons(class_path: str | os.PathLike, prob_path: str | os.PathLike, year: int,
                       min_area_m2: float, crs_wkt: str,
                       reporter: Reporter | None = None) -> VectorLayer:
    """Polygons of one year with ``year``, ``area_m2``, ``perimeter_m`` and ``mean_prob``."""
    geoms = polygonize(class_path)
    area = shapely.area(geoms) if len(geoms) else np.empty(0)
    keep = area >= min_area_m2
    geoms, area = geoms[keep], area[keep]
    mean_prob = mean_probability(prob_path, geoms, reporter)
    fields = {
        "year": np.full(len(geoms), int(year), np.int64),
        "area_m2": np.round(area, 2),
        "perimeter_m": np.round(shapely.length(geoms), 2) if len(geoms) else np.empty(0),
        "mean_prob": np.round(mean_prob, 4),
    }
    return VectorLayer(geoms, fields, crs_wkt)
