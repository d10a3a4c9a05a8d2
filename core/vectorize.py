"""Landslide polygons from the probability raster, with their attributes.

The raster (or one block of its rows, in a distributed run) is read in strips: each
strip is thresholded and labelled (4-connected); regions that continue across strip
edges are stitched by a connected-components pass over the labels touching at those
edges. Holes below the minimum area are filled as
each strip is read (with a halo of rows that makes this exact), and every region gets
its pixel count, so regions below the minimum area are dropped before any polygon is
built. A scratch raster of region ids then goes through GDAL's polygoniser, which
streams line by line, one polygon per region, in pixel coordinates. Memory holds one
strip at a time. Blocks of rows can be vectorised apart (on several Dask workers):
:func:`merge_blocks` joins the pieces of a region that crosses a block seam into one
polygon with the region's exact area.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import probability
from .progress import Reporter
from .vector_io import VectorLayer

STRIP = 256    # rows per strip, a multiple of the block size; temporaries are ~30 bytes per pixel
MAX_HALO = 256  # rows read above and below a strip to decide its holes
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _strips(row0: int, row1: int):
    for row in range(row0, row1, STRIP):
        yield row, min(STRIP, row1 - row)


def _strip_mask(ds, row: int, h: int, threshold: float, nodata: float, min_pixels: int) -> np.ndarray:
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
    mask = probability.landslide(prob, threshold, nodata)
    if halo:
        valid = prob != nodata
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


def _stitch(ds, rows: tuple[int, int], threshold: float, nodata: float, min_pixels: int, mask_ds,
            reporter: Reporter):
    """Pass 1: candidate regions per strip of ``rows``, stitched across strip edges; also
    the final region ids of the first and last row.

    A region lying inside one strip (touching neither its first nor its last row) is
    complete there: when it is below ``min_pixels`` it is dropped at once, so the global
    arrays grow with the number of real regions, not with speckle."""
    strips, total, pairs, prev_last, counts = [], 0, [], None, [np.zeros(1, np.int64)]
    first_row = None
    row0, row1 = rows
    for row, h in _strips(row0, row1):
        mask = _strip_mask(ds, row, h, threshold, nodata, min_pixels)
        mask_ds.write(mask.astype(np.uint8), 1, window=Window(0, row - row0, ds.width, h))  # kept for pass 2
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
        if first_row is None:
            first_row = lut[labels[0]]
        if prev_last is not None:
            first = lut[labels[0]]
            touching = (prev_last > 0) & (first > 0)
            pairs.append(np.stack([prev_last[touching], first[touching]]))
        prev_last = lut[labels[-1]]
        reporter.progress(0.4 * (row + h - row0) / (row1 - row0), "labelling landslide regions")
    edges = np.concatenate(pairs, axis=1) if pairs else np.empty((2, 0), np.int64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0] - 1, edges[1] - 1)), shape=(total, total))
    n_regions, component = connected_components(graph, directed=False)
    final = np.zeros(total + 1, np.int32)
    final[1:] = component + 1
    pixels = np.bincount(final, weights=np.concatenate(counts), minlength=n_regions + 1).astype(np.int64)
    return final, strips, pixels, final[first_row], final[prev_last]


@dataclass
class BlockRegions:
    """Regions of the raster rows [row0, row1), polygons in pixel coordinates (x = column,
    y = row, exact integers) so that pieces of one region from neighbouring blocks join
    exactly; ``first_row``/``last_row``: the index into ``geoms`` of each pixel of the
    block's first and last row (−1: none), which says which pieces touch across a seam."""

    row0: int
    row1: int
    geoms: np.ndarray
    pixels: np.ndarray
    sums: np.ndarray          # sum of probabilities over each region's pixels
    first_row: np.ndarray
    last_row: np.ndarray


def block_rows(height: int, blocks: int) -> list[tuple[int, int]]:
    """Rows of up to ``blocks`` vectorising blocks, each a whole number of strips (so that
    every strip, and with it every filled hole, is the same as in a single pass)."""
    strips = -(-height // STRIP)
    per = -(-strips // max(1, blocks))
    return [(s * STRIP, min(height, (s + per) * STRIP)) for s in range(0, strips, per)]


def vectorise_block(prob_path: str | os.PathLike, threshold: float, min_pixels: int = 1,
                    rows: tuple[int, int] | None = None, reporter: Reporter | None = None) -> BlockRegions:
    """Landslide regions of rows ``rows`` (default: all) of a probability raster.

    Holes below ``min_pixels`` are filled and regions below it dropped before any
    polygon is built: speckle inside a large region would otherwise become thousands of
    holes, costing time and memory, and neither is a mapping unit. Regions touching a
    block edge inside the raster are kept whatever their size: their other part lies in
    the next block (:func:`merge_blocks` decides)."""
    reporter = reporter or Reporter()
    min_pixels = max(1, int(min_pixels))
    prob_path = str(prob_path)
    tag = "" if rows is None else f".{rows[0]}"
    label_path, mask_path = f"{prob_path}{tag}.labels.tif", f"{prob_path}{tag}.regions.tif"
    try:
        with rasterio.open(prob_path) as ds, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)     # pixel coordinates on purpose
            row0, row1 = rows or (0, ds.height)
            # Uncompressed scratch rasters in pixel coordinates: GDAL's polygoniser reads them line by line.
            scratch = dict(driver="GTiff", width=ds.width, height=row1 - row0, count=1,
                           transform=Affine.translation(0, row0), BIGTIFF="IF_SAFER")
            nodata = probability.nodata_of(ds)
            with rasterio.open(mask_path, "w+", dtype="uint8", **scratch) as mask_ds:
                final, strip_labels, pixels, first_row, last_row = _stitch(
                    ds, (row0, row1), threshold, nodata, min_pixels, mask_ds, reporter)
                keep = pixels >= min_pixels
                keep[first_row] |= row0 > 0              # continues in the block above
                keep[last_row] |= row1 < ds.height       # continues in the block below
                keep[0] = False
                sums = np.zeros(len(pixels))
                with rasterio.open(label_path, "w", dtype="int32", **scratch) as lab_ds:
                    for (row, h), entry in zip(_strips(row0, row1), strip_labels):
                        win = Window(0, row - row0, ds.width, h)
                        labels, n = ndimage.label(mask_ds.read(1, window=win), FOUR_CONNECTED)
                        labels = final[entry.lookup(n)[labels]]
                        labels[~keep[labels]] = 0
                        values = probability.as_probability(ds.read(1, window=Window(0, row, ds.width, h)))
                        sums += np.bincount(labels.ravel(), weights=values.ravel(), minlength=len(pixels))
                        lab_ds.write(labels, 1, window=win)
                        mask_ds.write((labels > 0).astype(np.uint8), 1, window=win)  # now: kept regions
                        reporter.progress(0.4 + 0.3 * (row + h - row0) / (row1 - row0), "labelling landslide regions")
                if len(pixels) > 1 and pixels[1:].max() > max(10**6, 0.5 * ds.width * ds.height):
                    reporter.log(f"{prob_path}: one connected region holds {pixels[1:].max():,} pixels, over "
                                 "half the raster. Check the band mapping, reflectance scale and threshold: "
                                 "polygonising such a region is slow and memory-hungry.")
        rings, ring_ends, poly_ends, ids = [], [0], [0], []
        with warnings.catch_warnings(), rasterio.open(label_path) as lab_ds, rasterio.open(mask_path) as mask_ds:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
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
    ids = np.array(ids, dtype=np.int64)
    index = np.full(len(pixels), -1, np.int64)     # region id → its polygon
    index[ids] = np.arange(len(ids))
    return BlockRegions(row0, row1, _polygons(rings, ring_ends, poly_ends), pixels[ids], sums[ids],
                        index[first_row], index[last_row])


def merge_blocks(blocks: list[BlockRegions], transform, min_pixels: int = 1):
    """One region per landslide from the blocks of a raster: pieces that touch across a
    seam (4-connected, as within a block) are joined, their pixels and sums added; regions
    below ``min_pixels`` dropped; polygons put on the map by ``transform``. Returns
    polygons, pixel counts and mean probabilities, as :func:`regions`."""
    blocks = sorted(blocks, key=lambda b: b.row0)
    offsets = np.cumsum([0] + [len(b.geoms) for b in blocks])
    total = int(offsets[-1])
    pairs = []
    for k in range(len(blocks) - 1):
        above, below = blocks[k].last_row, blocks[k + 1].first_row
        touching = (above >= 0) & (below >= 0)
        pairs.append(np.stack([above[touching] + offsets[k], below[touching] + offsets[k + 1]]))
    geoms = np.concatenate([b.geoms for b in blocks]) if blocks else np.empty(0, object)
    pixels = np.concatenate([b.pixels for b in blocks]) if blocks else np.empty(0, np.int64)
    sums = np.concatenate([b.sums for b in blocks]) if blocks else np.empty(0)
    edges = np.concatenate(pairs, axis=1) if pairs else np.empty((2, 0), np.int64)
    if edges.shape[1]:
        graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(total, total))
        n, component = connected_components(graph, directed=False)
        pixels = np.bincount(component, weights=pixels, minlength=n).astype(np.int64)
        sums = np.bincount(component, weights=sums, minlength=n)
        order = np.argsort(component, kind="stable")
        starts = np.searchsorted(component[order], np.arange(n))
        counts = np.bincount(component, minlength=n)
        joined = np.empty(n, object)
        single = counts == 1
        joined[single] = geoms[order[starts[single]]]
        for c in np.flatnonzero(~single):     # only regions crossing a seam
            # pixel-corner coordinates are exact integers: the overlay joins the pieces exactly
            joined[c] = shapely.union_all(geoms[order[starts[c]:starts[c] + counts[c]]])
        geoms = joined
    keep = pixels >= max(1, int(min_pixels))
    geoms, pixels, sums = geoms[keep], pixels[keep], sums[keep]
    if len(geoms):
        a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(
            [c + a * xy[:, 0] + b * xy[:, 1], f + d * xy[:, 0] + e * xy[:, 1]]))
    return geoms, pixels, sums / np.maximum(pixels, 1)


def regions(prob_path: str | os.PathLike, threshold: float, min_pixels: int = 1,
            reporter: Reporter | None = None):
    """Landslide regions of at least ``min_pixels``: polygons (map coordinates), pixel
    counts and mean probabilities (see :func:`vectorise_block`)."""
    with rasterio.open(prob_path) as ds:
        transform = ds.transform
    return merge_blocks([vectorise_block(prob_path, threshold, min_pixels, reporter=reporter)], transform, min_pixels)


def _polygons(rings: list, ring_ends: list[int], poly_ends: list[int]) -> np.ndarray:
    """Polygons from the polygoniser's rings in one vectorised call (building them one by
    one from GeoJSON-like dicts cost a sixth of the vectorising time)."""
    if not rings:
        return np.empty(0, dtype=object)
    coords = np.array([xy for ring in rings for xy in ring], dtype=np.float64)
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                     (np.asarray(ring_ends, np.int64), np.asarray(poly_ends, np.int64)))


def min_pixels_for(pixel_area: float, min_area_m2: float) -> int:
    """Pixels a region needs to reach ``min_area_m2``: a region's polygon covers exactly
    its pixels, so its area is known before polygonising."""
    return int(np.ceil(min_area_m2 / pixel_area - 1e-9))


def polygon_layer(geoms: np.ndarray, mean_prob: np.ndarray, year: int, min_area_m2: float,
                  crs_wkt: str) -> VectorLayer:
    """Regions as one year's layer: ``year``, ``area_m2``, ``perimeter_m`` and ``mean_prob``."""
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


def landslide_polygons(prob_path: str | os.PathLike, year: int, threshold: float,
                       min_area_m2: float, crs_wkt: str,
                       reporter: Reporter | None = None) -> VectorLayer:
    """Polygons of one year with ``year``, ``area_m2``, ``perimeter_m`` and ``mean_prob``."""
    with rasterio.open(prob_path) as ds:
        pixel_area = abs(ds.transform.determinant)
    geoms, _, mean_prob = regions(prob_path, threshold, min_pixels_for(pixel_area, min_area_m2), reporter)
    return polygon_layer(geoms, mean_prob, year, min_area_m2, crs_wkt)
