"""Landslide polygons from the probability raster, with their attributes.

The raster is read in strips: each strip is thresholded, labelled (4-connected) and
polygonised in memory; regions that continue across strip edges are stitched by a
connected-components pass over the labels touching at those edges, and their pieces
are dissolved. Polygons are built in pixel coordinates, where shared edges are exact
integers, and moved to map coordinates at the end. Memory holds one strip at a time.
"""
from __future__ import annotations

import os

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .inference import PROB_NODATA
from .progress import Reporter
from .vector_io import VectorLayer

STRIP = 1024                                   # rows per strip; a multiple of the block size
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _strips(height: int):
    for row in range(0, height, STRIP):
        yield row, min(STRIP, height - row)


def _landslide_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    return (prob >= threshold) & (prob != PROB_NODATA)


def _stitch(ds, threshold: float, reporter: Reporter) -> tuple[np.ndarray, list[int], int]:
    """Pass 1: per-strip label offsets and the global id of every strip-local label."""
    offsets, total, pairs, prev_last = [], 0, [], None
    for row, h in _strips(ds.height):
        prob = ds.read(1, window=Window(0, row, ds.width, h))
        labels, n = ndimage.label(_landslide_mask(prob, threshold), FOUR_CONNECTED)
        labels[labels > 0] += total
        if prev_last is not None:
            touching = (prev_last > 0) & (labels[0] > 0)
            pairs.append(np.stack([prev_last[touching], labels[0][touching]]))
        prev_last = labels[-1].copy()
        offsets.append(total)
        total += n
        reporter.progress(0.4 * (row + h) / ds.height, "labelling landslide regions")
    edges = np.concatenate(pairs, axis=1) if pairs else np.empty((2, 0), np.int64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0] - 1, edges[1] - 1)), shape=(total, total))
    n_regions, component = connected_components(graph, directed=False)
    final = np.zeros(total + 1, np.int64)
    final[1:] = component + 1
    return final, offsets, n_regions


def regions(prob_path: str | os.PathLike, threshold: float, reporter: Reporter | None = None):
    """Landslide regions: polygons (map coordinates), pixel counts and mean probabilities."""
    reporter = reporter or Reporter()
    with rasterio.open(prob_path) as ds:
        final, offsets, n_regions = _stitch(ds, threshold, reporter)
        sums = np.zeros(n_regions + 1)
        counts = np.zeros(n_regions + 1, np.int64)
        geoms, ids = [], []
        for (row, h), offset in zip(_strips(ds.height), offsets):
            prob = ds.read(1, window=Window(0, row, ds.width, h))
            mask = _landslide_mask(prob, threshold)
            labels, _ = ndimage.label(mask, FOUR_CONNECTED)
            labels = final[np.where(labels > 0, labels + offset, 0)].astype(np.int32)
            sums += np.bincount(labels.ravel(), weights=prob.ravel(), minlength=n_regions + 1)
            counts += np.bincount(labels.ravel(), minlength=n_regions + 1)
            for geom, value in rasterio.features.shapes(labels, mask=mask, transform=Affine.translation(0, row)):
                geoms.append(shapely.geometry.shape(geom))
                ids.append(int(value))
            reporter.progress(0.4 + 0.5 * (row + h) / ds.height, "polygonising")
        transform = ds.transform
    geoms = np.array(geoms, dtype=object) if geoms else np.empty(0, dtype=object)
    ids = np.array(ids, dtype=np.int64)
    geoms, ids = _dissolve_pieces(geoms, ids)
    geoms = shapely.transform(geoms, lambda xy: np.column_stack(transform * (xy[:, 0], xy[:, 1])))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = sums[ids] / counts[ids]
    return geoms, counts[ids], mean_prob


def _dissolve_pieces(geoms: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One polygon per region: pieces cut by strip edges are unioned (exact, in pixel units)."""
    if not len(ids):
        return geoms, ids
    unique, first, n = np.unique(ids, return_index=True, return_counts=True)
    out = geoms[first]
    for k in np.flatnonzero(n > 1):
        out[k] = shapely.union_all(geoms[ids == unique[k]])
    return out, unique


def landslide_polygons(prob_path: str | os.PathLike, year: int, threshold: float,
                       min_area_m2: float, crs_wkt: str,
                       reporter: Reporter | None = None) -> VectorLayer:
    """Polygons of one year with ``year``, ``area_m2``, ``perimeter_m`` and ``mean_prob``."""
    geoms, _, mean_prob = regions(prob_path, threshold, reporter)
    area = shapely.area(geoms) if len(geoms) else np.empty(0)
    keep = area >= min_area_m2
    geoms, area, mean_prob = geoms[keep], area[keep], mean_prob[keep]
    fields = {
        "year": np.full(len(geoms), int(year), np.int64),
        "area_m2": np.round(area, 2),
        "perimeter_m": np.round(shapely.length(geoms), 2) if len(geoms) else np.empty(0),
        "mean_prob": np.round(mean_prob, 4),
    }
    return VectorLayer(geoms, fields, crs_wkt)
