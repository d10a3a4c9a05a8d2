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

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
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
from ..progress import Reporter
from ..geodata.vector_io import VectorLayer

STRIP = 256    # rows per strip at most; temporaries are ~30 bytes per pixel
STRIP_PIXELS = 2**20  # pixels per strip at most (wide rasters get strips of fewer rows)
MAX_HALO = 256  # rows read above and below a strip to decide its holes
MAX_THREADS = 4  # vectorising threads of one process (each holds one strip)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _has_osgeo_arrow() -> bool:
    try:
        from osgeo import gdal, ogr  # noqa: F401  (gdal: Polygonize)
    except ImportError:
        return False
    return hasattr(ogr.Layer, "GetArrowStreamAsNumPy")


_OSGEO = _has_osgeo_arrow()
try:                                   # OpenCV labels 3-4 times faster than scipy, without the GIL
    import cv2
except ImportError:
    cv2 = None


def _label(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """4-connected labels of a boolean mask (int32, 0 = background), their count and the
    pixels of each label (index 0: the background). OpenCV counts them while labelling;
    a separate bincount over every pixel holds the GIL."""
    if cv2 is not None:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(mask).view(np.uint8),
                                                               connectivity=4, ltype=cv2.CV_32S)
        return labels, n - 1, stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    labels, n = ndimage.label(mask, FOUR_CONNECTED)
    return labels.astype(np.int32, copy=False), n, np.bincount(labels.ravel(), minlength=n + 1)


def strip_rows(width: int) -> int:
    """Rows per strip: ``STRIP``, fewer for wide rasters so that a strip holds at most
    ``STRIP_PIXELS`` (memory per vectorising thread stays flat whatever the width)."""
    return min(STRIP, max(16, STRIP_PIXELS // max(1, width) // 16 * 16))


def _strips(row0: int, row1: int, width: int):
    step = strip_rows(width)
    for row in range(row0, row1, step):
        yield row, min(step, row1 - row)


def _strip_mask(ds, row: int, h: int, threshold: float, nodata: float,
                min_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Landslide mask of rows [row, row+h), holes below ``min_pixels`` filled, and the
    stored values of those rows.

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
        background, n, size = _label(valid & ~mask)
        open_ = np.zeros(n + 1, bool)   # reaches the window or raster edge, or nodata
        open_[background[0]] = open_[background[-1]] = True
        open_[background[:, 0]] = open_[background[:, -1]] = True
        if not valid.all():          # most strips hold no nodata: no dilation needed
            open_[background[ndimage.binary_dilation(~valid, FOUR_CONNECTED)]] = True
        hole = (size < min_pixels) & ~open_
        hole[0] = False
        mask |= hole[background]
    return mask[row - top:row - top + h], prob[row - top:row - top + h]


def _stitch(ds, rows: tuple[int, int], threshold: float, nodata: float, min_pixels: int, lab_ds,
            reporter: Reporter):
    """Pass 1: candidate regions per strip of ``rows``, stitched across strip edges; each
    strip's candidate ids go to ``lab_ds`` for pass 2. Returns the candidate → region
    lookup, the pixels and the sum of probabilities per region, and the region ids of the
    first and last row (summed here, where the strip's values are at hand, rather than
    read and decoded again in pass 2).

    A region lying inside one strip (touching neither its first nor its last row) is
    complete there: when it is below ``min_pixels`` it is dropped at once, so the global
    arrays grow with the number of real regions, not with speckle."""
    total, pairs, prev_last, counts, sums = 0, [], None, [np.zeros(1, np.int64)], [np.zeros(1)]
    first_row = None
    row0, row1 = rows
    for row, h in _strips(row0, row1, ds.width):
        mask, values = _strip_mask(ds, row, h, threshold, nodata, min_pixels)
        labels, n, size = _label(mask)
        on_edge = np.zeros(n + 1, bool)
        on_edge[labels[0]] = on_edge[labels[-1]] = True
        keep = (size >= min_pixels) | on_edge
        keep[0] = False
        local = np.flatnonzero(keep)
        lut = np.zeros(n + 1, np.int32)
        lut[local] = total + 1 + np.arange(len(local))
        counts.append(size[local])
        total += len(local)
        candidates = lut[labels]
        inside = candidates > 0           # a few per cent of the pixels: weigh only those
        sums.append(np.bincount(candidates[inside] - (total - len(local)),
                                weights=probability.as_probability(values[inside]), minlength=len(local) + 1)[1:])
        del mask, values         # the strip's window with its halo: not held while the next one is read
        lab_ds.write(candidates, 1, window=Window(0, row - row0, ds.width, h))       # for pass 2
        if first_row is None:
            first_row = candidates[0]
        if prev_last is not None:
            first = candidates[0]
            touching = (prev_last > 0) & (first > 0)
            pairs.append(np.stack([prev_last[touching], first[touching]]))
        prev_last = candidates[-1]
        reporter.progress(0.4 * (row + h - row0) / (row1 - row0), "labelling landslide regions")
    edges = np.concatenate(pairs, axis=1) if pairs else np.empty((2, 0), np.int64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0] - 1, edges[1] - 1)), shape=(total, total))
    n_regions, component = connected_components(graph, directed=False)
    final = np.zeros(total + 1, np.int32)
    final[1:] = component + 1
    pixels = np.bincount(final, weights=np.concatenate(counts), minlength=n_regions + 1).astype(np.int64)
    region_sums = np.bincount(final, weights=np.concatenate(sums), minlength=n_regions + 1)
    return final, pixels, region_sums, final[first_row], final[prev_last]


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


def block_rows(height: int, width: int, blocks: int) -> list[tuple[int, int]]:
    """Rows of up to ``blocks`` vectorising blocks, each a whole number of strips (so that
    every strip, and with it every filled hole, is the same as in a single pass)."""
    step = strip_rows(width)
    strips = -(-height // step)
    per = -(-strips // max(1, blocks))
    return [(s * step, min(height, (s + per) * step)) for s in range(0, strips, per)]


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
    label_path = f"{prob_path}{tag}.labels.tif"
    mask_path = None if _OSGEO else f"{prob_path}{tag}.regions.tif"
    try:
        with rasterio.open(prob_path) as ds, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)     # pixel coordinates on purpose
            row0, row1 = rows or (0, ds.height)
            # Uncompressed scratch rasters in pixel coordinates: GDAL's polygoniser reads them line by line.
            scratch = dict(driver="GTiff", width=ds.width, height=row1 - row0, count=1,
                           transform=Affine.translation(0, row0), BIGTIFF="IF_SAFER")
            nodata = probability.nodata_of(ds)
            with rasterio.open(label_path, "w+", dtype="int32", nodata=0, **scratch) as lab_ds:
                final, pixels, sums, first_row, last_row = _stitch(ds, (row0, row1), threshold, nodata,
                                                                   min_pixels, lab_ds, reporter)
                keep = pixels >= min_pixels
                keep[first_row] |= row0 > 0              # continues in the block above
                keep[last_row] |= row1 < ds.height       # continues in the block below
                keep[0] = False
                mask_ds = rasterio.open(mask_path, "w", dtype="uint8", **scratch) if mask_path else None
                try:
                    for row, h in _strips(row0, row1, ds.width):
                        win = Window(0, row - row0, ds.width, h)
                        labels = final[lab_ds.read(1, window=win)]        # candidates → regions
                        labels[~keep[labels]] = 0
                        lab_ds.write(labels, 1, window=win)
                        if mask_ds is not None:
                            mask_ds.write((labels > 0).astype(np.uint8), 1, window=win)
                        reporter.progress(0.4 + 0.3 * (row + h - row0) / (row1 - row0), "labelling landslide regions")
                finally:
                    if mask_ds is not None:
                        mask_ds.close()
                if len(pixels) > 1 and pixels[1:].max() > max(10**6, 0.5 * ds.width * ds.height):
                    reporter.log(f"{prob_path}: one connected region holds {pixels[1:].max():,} pixels, over "
                                 "half the raster. Check the band mapping, reflectance scale and threshold: "
                                 "polygonising such a region is slow and memory-hungry.")
        geoms, ids = _polygonise(label_path, mask_path, reporter)
        reporter.progress(1.0, "polygonising")
    finally:
        for path in (label_path, mask_path):
            if path and os.path.exists(path):
                os.unlink(path)
    index = np.full(len(pixels), -1, np.int64)     # region id → its polygon
    index[ids] = np.arange(len(ids))
    return BlockRegions(row0, row1, geoms, pixels[ids], sums[ids], index[first_row], index[last_row])


def _polygonise(label_path: str, mask_path: str | None, reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
    """One polygon per region id of the label raster (0 = none): polygons and their ids.

    With GDAL's own Python bindings (always there in QGIS; GDAL 3.6 or newer) the
    polygoniser releases the GIL, so blocks polygonise in parallel threads, and the
    polygons come back as WKB in one Arrow batch; otherwise through rasterio, which needs
    a mask raster."""
    if _OSGEO:
        from osgeo import gdal, ogr

        with _gdal_errors(gdal, ogr):
            src = gdal.Open(label_path)
            if src is None:
                raise OSError(f"GDAL could not open {label_path}: {gdal.GetLastErrorMsg()}")
            band = src.GetRasterBand(1)
            out = ogr.GetDriverByName("Memory").CreateDataSource("")
            layer = out.CreateLayer("regions", geom_type=ogr.wkbPolygon)
            layer.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
            if gdal.Polygonize(band, band.GetMaskBand(), layer, 0, []) != 0:
                raise OSError(f"GDAL could not polygonise {label_path}: {gdal.GetLastErrorMsg()}")
            reporter.check_cancelled()
            geoms, ids = [np.empty(0, object)], [np.empty(0, np.int64)]
            for batch in layer.GetArrowStreamAsNumPy(options=["USE_MASKED_ARRAYS=NO"]):
                wkb = next(v for k, v in batch.items() if k not in ("id", "OGC_FID"))
                geoms.append(shapely.from_wkb(wkb))
                ids.append(batch["id"].astype(np.int64))
            out = layer = band = src = None
        return np.concatenate(geoms), np.concatenate(ids)
    rings, ring_ends, poly_ends, ids = [], [0], [0], []
    with warnings.catch_warnings(), rasterio.open(label_path) as lab_ds, rasterio.open(mask_path) as mask_ds:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for geom, value in rasterio.features.shapes(rasterio.band(lab_ds, 1), mask=rasterio.band(mask_ds, 1)):
            for ring in geom["coordinates"]:
                rings.append(np.asarray(ring, np.float64))
                ring_ends.append(ring_ends[-1] + len(ring))
            poly_ends.append(poly_ends[-1] + len(geom["coordinates"]))
            ids.append(int(value))
            if len(ids) % 1000 == 0:
                reporter.check_cancelled()
    return _polygons(rings, ring_ends, poly_ends), np.array(ids, dtype=np.int64)


def _gdal_errors(gdal, ogr) -> contextlib.ExitStack:
    """GDAL errors as exceptions for the calls inside, where GDAL can scope them (3.7+);
    before that the calls' return values are checked, and the host's global setting (QGIS
    Python's) is left alone."""
    stack = contextlib.ExitStack()
    if hasattr(gdal, "ExceptionMgr"):
        stack.enter_context(gdal.ExceptionMgr(useExceptions=True))
        stack.enter_context(ogr.ExceptionMgr(useExceptions=True))
    return stack


TRANSFORM_CHUNK = 4096    # polygons put on the map at a time (old and new coexist only per chunk)


def merge_blocks(blocks: list[BlockRegions], transform, min_pixels: int = 1):
    """One region per landslide from the blocks of a raster: pieces that touch across a
    seam (4-connected, as within a block) are joined, their pixels and sums added; regions
    below ``min_pixels`` dropped; polygons put on the map by ``transform``. Returns
    polygons, pixel counts and mean probabilities, as :func:`regions`.

    The polygons are taken over from the blocks (each block's ``geoms`` is left empty) and
    moved onto the map a chunk at a time, so the pixel-coordinate and the map copies of
    every polygon never coexist (30,000 polygons of a 16,384² raster: 56 MB less at peak)."""
    blocks = sorted(blocks, key=lambda b: b.row0)
    offsets = np.cumsum([0] + [len(b.geoms) for b in blocks])
    total = int(offsets[-1])
    pairs = []
    for k in range(len(blocks) - 1):
        above, below = blocks[k].last_row, blocks[k + 1].first_row
        touching = (above >= 0) & (below >= 0)
        pairs.append(np.stack([above[touching] + offsets[k], below[touching] + offsets[k + 1]]))
    geoms = np.concatenate([b.geoms for b in blocks]) if blocks else np.empty(0, object)
    for b in blocks:
        b.geoms = np.empty(0, object)
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
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    for s in range(0, len(geoms), TRANSFORM_CHUNK):
        geoms[s:s + TRANSFORM_CHUNK] = shapely.transform(geoms[s:s + TRANSFORM_CHUNK], lambda xy: np.column_stack(
            [c + a * xy[:, 0] + b * xy[:, 1], f + d * xy[:, 0] + e * xy[:, 1]]))
    return geoms, pixels, sums / np.maximum(pixels, 1)


def regions(prob_path: str | os.PathLike, threshold: float, min_pixels: int = 1,
            reporter: Reporter | None = None, threads: int | None = None):
    """Landslide regions of at least ``min_pixels``: polygons (map coordinates), pixel
    counts and mean probabilities (see :func:`vectorise_block`). The raster is cut into
    one block of rows per thread (``threads``, default: the cores, at most
    ``MAX_THREADS``); labelling (OpenCV) and polygonising (GDAL) release the GIL, so the
    blocks run in parallel, and :func:`merge_blocks` joins them as a cluster's would be."""
    reporter = reporter or Reporter()
    with rasterio.open(prob_path) as ds:
        transform, height, width = ds.transform, ds.height, ds.width
    n = threads or min(MAX_THREADS, os.cpu_count() or 1)
    if not (_OSGEO or cv2 is not None):          # nothing would run in parallel
        n = 1
    rows = block_rows(height, width, n)
    if len(rows) == 1:
        parts = [vectorise_block(prob_path, threshold, min_pixels, reporter=reporter)]
    else:
        with ThreadPoolExecutor(len(rows), thread_name_prefix="vectorise") as pool:
            futures = [pool.submit(vectorise_block, prob_path, threshold, min_pixels, r,
                                   reporter if i == 0 else reporter.quiet()) for i, r in enumerate(rows)]
            parts = [f.result() for f in futures]
    return merge_blocks(parts, transform, min_pixels)


def _polygons(rings: list, ring_ends: list[int], poly_ends: list[int]) -> np.ndarray:
    """Polygons from the polygoniser's rings in one vectorised call (building them one by
    one from GeoJSON-like dicts cost a sixth of the vectorising time)."""
    if not rings:
        return np.empty(0, dtype=object)
    coords = np.concatenate(rings)
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
