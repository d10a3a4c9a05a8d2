"""Landslide polygons from the probability raster, with their attributes.

The raster is read in strips: each strip is thresholded and labelled (4-connected);
regions that continue across strip edges are stitched by a connected-components pass
over the labels touching at those edges. Holes below the minimum area are filled as
each strip is read (with a halo of rows that makes this exact), and every region gets
its pixel count, so regions below the minimum area are dropped before any polygon is
built. A scratch raster of region ids then goes through GDAL's polygoniser, which
streams line by line, one polygon per region. Memory holds one strip at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .inference import PROB_NODATA
from .progress import Reporter
from .vector_io import VectorLayer

STRIP = 256    # rows per strip, a multiple of the block size; temporaries are ~30 bytes per pixel
MAX_HALO = 256  # rows read above and below a strip to decide its holes
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _strips(height: int):
    for row in range(0, height, STRIP):
        yield row, min(STRIP, height - row)


def _landslide_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    return (prob >= threshold) & (prob != PROB_NODATA)


def _strip_mask(ds, row: int, h: int, threshold: float, min_pixels: int) -> np.ndarray:
    """Landslide mask of rows [row, row+h), holes below ``min_pixels`` filled.

    A hole is a 4-connected patch of valid non-landslide pixels that touches neither the
    raster edge nor nodata. One smaller than ``min_pixels`` spans fewer rows than that,
    so a halo of ``min_pixels`` rows above and below decides every such hole in the
    strip exactly, whatever the strip boundaries. The halo is capped at ``MAX_HALO``
    rows to bound memory: a hole below the minimum area yet taller than that (a slit a
    few pixels wide) is then left open."""
    halo = min(min_pixels, MAX_HALO) if min_pixels > 1 else 0
    top, bottom = max(0, row - halo), min(ds.height, row + h + halo)
    prob = ds.read(1, window=Window(0, top, ds.width, bottom - top))
    mask = _landslide_mask(prob, threshold)
    if halo:
        valid = prob != PROB_NODATA
        background, n = ndimage.label(valid & ~mask, FOUR_CONNECTED)
        size = np.bincount(background.ravel(), minlength=n + 1)
        open_ = np.zeros(n + 1, bool)   # reaches the window or raster edge, or nodata
        open_[background[0]] = open_[background[-1]] = True
        open_[background[:, 0]] = open_[background[:, -1]] = True
        if not valid.all():          # most strips hold no nodata: no dilation needed
            open_[background[ndimage.binary_dilation(~valid, FOUR_CONNECTED)]] = True
        hole = (size < min_pixels) & ~open_
        hole[0] = False
        mask |= hole[background]
    return mask[row - top:row - top + h]


@dataclass
class _StripLabels:
    """Which local labels of one strip are candidate regions, and their first global id."""

    local: np.ndarray      # sorted local label numbers kept as candidates
    first_id: int          # global id of local[0]; the others follow consecutively

    def lookup(self, n_local: int) -> np.ndarray:
        lut = np.zeros(n_local + 1, np.int32)
        lut[self.local] = self.first_id + np.arange(len(self.local))
        return lut


def _stitch(ds, threshold: float, min_pixels: int, mask_ds, reporter: Reporter):
    """Pass 1: candidate regions per strip, stitched across strip edges.

    A region lying inside one strip (touching neither its first nor its last row) is
    complete there: when it is below ``min_pixels`` it is dropped at once, so the global
    arrays grow with the number of real regions, not with speckle."""
    strips, total, pairs, prev_last, counts = [], 0, [], None, [np.zeros(1, np.int64)]
    for row, h in _strips(ds.height):
        mask = _strip_mask(ds, row, h, threshold, min_pixels)
        mask_ds.write(mask.astype(np.uint8), 1, window=Window(0, row, ds.width, h))  # kept for pass 2
        labels, n = ndimage.label(mask, FOUR_CONNECTED)
        size = np.bincount(labels.ravel(), minlength=n + 1)
        on_edge = np.zeros(n + 1, bool)
        on_edge[labels[0]] = on_edge[labels[-1]] = True
        keep = (size >= min_pixels) | on_edge
        keep[0] = False
        entry = _StripLabels(np.flatnonzero(keep), total + 1)
        strips.append(entry)
        counts.append(size[entry.local])
        total += len(entry.local)
        lut = entry.lookup(n)
        if prev_last is not None:
            first = lut[labels[0]]
            touching = (prev_last > 0) & (first > 0)
            pairs.append(np.stack([prev_last[touching], first[touching]]))
        prev_last = lut[labels[-1]]
        reporter.progress(0.4 * (row + h) / ds.height, "labelling landslide regions")
    edges = np.concatenate(pairs, axis=1) if pairs else np.empty((2, 0), np.int64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0] - 1, edges[1] - 1)), shape=(total, total))
    n_regions, component = connected_components(graph, directed=False)
    final = np.zeros(total + 1, np.int32)
    final[1:] = component + 1
    pixels = np.bincount(final, weights=np.concatenate(counts), minlength=n_regions + 1).astype(np.int64)
    return final, strips, pixels


def regions(prob_path: str | os.PathLike, threshold: float, min_pixels: int = 1,
            reporter: Reporter | None = None):
    """Landslide regions of at least ``min_pixels``: polygons (map coordinates), pixel
    counts and mean probabilities.

    Holes below ``min_pixels`` are filled and regions below it dropped before any
    polygon is built: speckle inside a large region would otherwise become thousands of
    holes, costing time and memory, and neither is a mapping unit."""
    reporter = reporter or Reporter()
    min_pixels = max(1, int(min_pixels))
    prob_path = str(prob_path)
    label_path, mask_path = prob_path + ".labels.tif", prob_path + ".regions.tif"
    try:
        with rasterio.open(prob_path) as ds:
            # Uncompressed scratch rasters: GDAL's polygoniser reads them line by line.
            scratch = dict(driver="GTiff", width=ds.width, height=ds.height, count=1,
                           transform=ds.transform, crs=ds.crs, BIGTIFF="IF_SAFER")
            with rasterio.open(mask_path, "w+", dtype="uint8", **scratch) as mask_ds:
                final, strip_labels, pixels = _stitch(ds, threshold, min_pixels, mask_ds, reporter)
                keep = pixels >= min_pixels
                keep[0] = False
                if len(pixels) > 1 and pixels[1:].max() > max(10**6, 0.5 * ds.width * ds.height):
                    reporter.log(f"{prob_path}: one connected region holds {pixels[1:].max():,} pixels, over "
                                 "half the raster. Check the band mapping, reflectance scale and threshold: "
                                 "polygonising such a region is slow and memory-hungry.")
                sums = np.zeros(len(pixels))
                with rasterio.open(label_path, "w", dtype="int32", **scratch) as lab_ds:
                    for (row, h), entry in zip(_strips(ds.height), strip_labels):
                        win = Window(0, row, ds.width, h)
                        labels, n = ndimage.label(mask_ds.read(1, window=win), FOUR_CONNECTED)
                        labels = final[entry.lookup(n)[labels]]
                        labels[~keep[labels]] = 0
                        sums += np.bincount(labels.ravel(), weights=ds.read(1, window=win).ravel(),
                                            minlength=len(pixels))
                        lab_ds.write(labels, 1, window=win)
                        mask_ds.write((labels > 0).astype(np.uint8), 1, window=win)  # now: kept regions
                        reporter.progress(0.4 + 0.3 * (row + h) / ds.height, "labelling landslide regions")
        rings, ring_ends, poly_ends, ids = [], [0], [0], []
        with rasterio.open(label_path) as lab_ds, rasterio.open(mask_path) as mask_ds:
            for geom, value in rasterio.features.shapes(rasterio.band(lab_ds, 1), mask=rasterio.band(mask_ds, 1)):
                for ring in geom["coordinates"]:
                    rings.append(ring)
                    ring_ends.append(ring_ends[-1] + len(ring))
                poly_ends.append(poly_ends[-1] + len(geom["coordinates"]))
                ids.append(int(value))
                if len(ids) % 1000 == 0:
                    reporter.check_cancelled()
        reporter.progress(1.0, "polygonising")
    finally:
        for path in (label_path, mask_path):
            if os.path.exists(path):
                os.unlink(path)
    geoms = _polygons(rings, ring_ends, poly_ends)
    ids = np.array(ids, dtype=np.int64)
    return geoms, pixels[ids], sums[ids] / np.maximum(pixels[ids], 1)


def _polygons(rings: list, ring_ends: list[int], poly_ends: list[int]) -> np.ndarray:
    """Polygons from the polygoniser's rings in one vectorised call (building them one by
    one from GeoJSON-like dicts cost a sixth of the vectorising time)."""
    if not rings:
        return np.empty(0, dtype=object)
    coords = np.array([xy for ring in rings for xy in ring], dtype=np.float64)
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                     (np.asarray(ring_ends, np.int64), np.asarray(poly_ends, np.int64)))


def landslide_polygons(prob_path: str | os.PathLike, year: int, threshold: float,
                       min_area_m2: float, crs_wkt: str,
                       reporter: Reporter | None = None) -> VectorLayer:
    """Polygons of one year with ``year``, ``area_m2``, ``perimeter_m`` and ``mean_prob``."""
    with rasterio.open(prob_path) as ds:
        pixel_area = abs(ds.transform.determinant)
    # a region's polygon covers exactly its pixels, so its area is known before polygonising
    min_pixels = int(np.ceil(min_area_m2 / pixel_area - 1e-9))
    geoms, _, mean_prob = regions(prob_path, threshold, min_pixels, reporter)
    area = shapely.area(geoms) if len(geoms) else np.empty(0)
    keep = area >= min_area_m2 - 1e-6
    geoms, area, mean_prob = geoms[keep], area[keep], mean_prob[keep]
    fields = {
        "year": np.full(len(geoms), int(year), np.int64),
        "area_m2": np.round(area, 2),
        "perimeter_m": np.round(shapely.length(geoms), 2) if len(geoms) else np.empty(0),
        "mean_prob": np.round(mean_prob, 4),
    }
    return VectorLayer(geoms, fields, crs_wkt)
