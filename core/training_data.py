"""Training patches from (raster, landslide polygons, reviewed-area polygons) sources.

Labels are only trustworthy where someone looked: inside the reviewed-area polygons every
pixel that is not a landslide is a known negative, outside them nothing is known. So a
patch is kept only when all of its pixels are reviewed and valid, and the validation
split keeps training and validation pixels apart, since overlapping patches would
otherwise leak validation pixels into training.

Pure numpy + rasterio + shapely (+ albumentations for augmentation, imported lazily); no
Qt, QGIS or TensorFlow, so the worker process and the tests can use it as it is.
"""
from __future__ import annotations

import inspect
import math
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio.features
import shapely
from rasterio.windows import Window

from . import crs as crs_rules
from .bands import build_channels, required_spectral
from .errors import InputError
from .inventory import parse_crs, to_crs
from .jobs import TrainingSource
from .progress import Reporter
from .raster import YearRaster
from .vector_io import read_layer

STD_FLOOR = 1e-3
_POLYGONAL = (3, 6)          # shapely type ids: Polygon, MultiPolygon
_COLLECTION = 7


@dataclass
class PatchSet:
    """Patches of all sources, in NHWC order for Keras.

    ``images`` hold the model's channels in reflectance units (NDVI in [-1, 1]), not
    normalised: :func:`normalisation` gives the statistics, ideally of the training
    subset only. ``stats`` is ``{"sources": [per-source dict], "total": dict}``, each with
    candidate / kept / dropped_unreviewed / dropped_nodata / dropped_empty counts and
    the positive pixel fraction of the kept patches.
    """

    images: np.ndarray
    masks: np.ndarray
    source: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    channels: list[str]
    pixel_size: list[float]
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.images.shape[1])


# -- vector input -----------------------------------------------------------------------

def _layer_name(path: str, layer: str | None) -> str:
    return f"layer {layer!r} of {path}" if layer else f"the first layer of {path}"


def _read_polygons(path: str, layer: str | None, what: str, raster: YearRaster,
                   log: Callable[[str], None], allow_empty: bool = False) -> np.ndarray:
    """Polygons of one layer in the raster's CRS; refuses empty and polygon-less layers
    (an empty label layer is fine with ``allow_empty``: a reviewed area without landslides)."""
    name = _layer_name(path, layer)
    try:
        vl = read_layer(path, layer)
    except InputError as exc:
        raise InputError(f"The {what} cannot be read: {exc}") from None
    geoms = np.asarray(vl.geometries, dtype=object)
    geoms = geoms[~shapely.is_missing(geoms)] if len(geoms) else geoms
    if len(geoms):
        geoms = geoms[~shapely.is_empty(geoms)]
    if not len(geoms):
        if allow_empty:
            return geoms
        raise InputError(f"The {what} ({name}) is empty: it has no feature with a geometry.")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():  # e.g. self-intersecting rings, on which GEOS predicates may fail
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
        log(f"{name}: {int(invalid.sum())} invalid geometries repaired.")
    types = shapely.get_type_id(geoms)
    if (types == _COLLECTION).any():  # keep the polygonal members of geometry collections
        parts = shapely.get_parts(geoms[types == _COLLECTION])
        geoms = np.concatenate([geoms[types != _COLLECTION], parts])
        types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, _POLYGONAL)
    if not polygonal.any():
        kinds = sorted({g.geom_type for g in geoms[:100]})
        raise InputError(
            f"The {what} ({name}) has no polygons, only {', '.join(kinds)}: landslides and "
            "reviewed areas must be drawn as polygons.")
    if not polygonal.all():
        log(f"{name}: {int((~polygonal).sum())} non-polygon geometries ignored.")
    geoms = geoms[polygonal]
    return _to_raster_crs(geoms, vl.crs_wkt, name, raster, log)


def _to_raster_crs(geoms: np.ndarray, wkt: str | None, name: str, raster: YearRaster,
                   log: Callable[[str], None]) -> np.ndarray:
    src = parse_crs(wkt, name)
    if src is None:
        log(f"{name} has no coordinate reference system; assuming the raster's "
            f"({crs_rules.describe(raster.crs)}).")
        return geoms
    if src == raster.crs:
        return geoms
    out = to_crs(geoms, src, raster.crs, name)
    log(f"{name}: reprojected from {crs_rules.describe(src)} to {crs_rules.describe(raster.crs)}.")
    return out


# -- raster geometry --------------------------------------------------------------------

def _touching(geoms: np.ndarray, bounds) -> np.ndarray:
    """Which geometries' bounding boxes meet ``bounds`` (robust even for odd geometries)."""
    b = shapely.bounds(geoms)
    return (b[:, 0] <= bounds[2]) & (b[:, 2] >= bounds[0]) & (b[:, 1] <= bounds[3]) & (b[:, 3] >= bounds[1])


def _raster_bounds(raster: YearRaster) -> tuple[float, float, float, float]:
    """Bounds of the raster's four corners (also right for rotated grids)."""
    t, w, h = raster.transform, raster.width, raster.height
    xs, ys = zip(*(t * (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))))
    return min(xs), min(ys), max(xs), max(ys)


def _fmt_bounds(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def _pixel_window(raster: YearRaster, bounds) -> Window | None:
    """Smallest window holding every pixel whose centre may fall in ``bounds``; None if empty."""
    inv = ~raster.transform
    x0, y0, x1, y1 = bounds
    corners = np.array([inv * (x, y) for x in (x0, x1) for y in (y0, y1)])
    c0 = max(0, math.floor(corners[:, 0].min()))
    r0 = max(0, math.floor(corners[:, 1].min()))
    c1 = min(raster.width, math.ceil(corners[:, 0].max()))
    r1 = min(raster.height, math.ceil(corners[:, 1].max()))
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _burn(geoms: np.ndarray, window: Window, transform) -> np.ndarray:
    """Pixel-centre rasterisation (all_touched=False) of ``geoms`` onto the window."""
    shape = (int(window.height), int(window.width))
    if not len(geoms):
        return np.zeros(shape, bool)
    return rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform,
                                       fill=0, all_touched=False, dtype="uint8").astype(bool)


def _starts(length: int, size: int, stride: int) -> np.ndarray:
    """Patch origins along one axis; the last one snapped so the far edge is covered."""
    starts = np.arange(0, length - size + 1, stride, dtype=np.int64)
    if starts[-1] != length - size:
        starts = np.append(starts, length - size)
    return starts


def _patch_sums(mask: np.ndarray, rs: np.ndarray, cs: np.ndarray, size: int) -> np.ndarray:
    """Count of True pixels in every patch of the (rs × cs) grid, via cumulative sums."""
    dtype = np.int32 if mask.size < 2**31 else np.int64
    acc = np.zeros((mask.shape[0] + 1, mask.shape[1]), dtype)
    np.cumsum(mask, axis=0, dtype=dtype, out=acc[1:])
    bands = acc[rs + size] - acc[rs]                      # (n_rows, width): column sums per band
    acc2 = np.zeros((len(rs), mask.shape[1] + 1), dtype)
    np.cumsum(bands, axis=1, out=acc2[:, 1:])
    return acc2[:, cs + size] - acc2[:, cs]               # (n_rows, n_cols)


def _largest_patch(limit: int) -> str:
    best = (limit // 16) * 16
    return f"a patch size of {best} or less" if best >= 16 else "larger reviewed areas"


# -- patches ----------------------------------------------------------------------------

def prepare_patches(sources: Sequence[TrainingSource], channels: Sequence[str], patch_size: int = 128,
                    stride: int | None = None, drop_empty: bool = False,
                    reporter: Reporter | None = None) -> PatchSet:
    """Cut every source into ``patch_size`` patches that are fully reviewed and valid.

    Only the window spanning the reviewed areas is read (the whole raster when a source
    has no reviewed-area layer, which means its labels are taken as complete).
    """
    reporter = reporter or Reporter()
    channels = list(channels)
    spectral = required_spectral(channels)
    if patch_size < 1:
        raise InputError(f"Patch size must be positive, got {patch_size}.")
    stride = patch_size // 2 if stride is None else int(stride)
    if stride < 1:
        raise InputError(f"Stride must be positive, got {stride}.")
    if not sources:
        raise InputError("No training data given: add at least one raster with its label polygons.")
    parts, per_source, pixel_size = [], [], []
    n = len(sources)
    for i, src in enumerate(sources):
        reporter.progress(i / n, f"Reading training data {i + 1}/{n}: {src.raster}")
        part, stats, px = _source_patches(src, spectral, channels, patch_size, stride, drop_empty, reporter)
        parts.append((i, part))
        per_source.append(stats)
        pixel_size.append(px)
    reporter.progress(1.0, "Training patches ready")
    images = np.concatenate([p["images"] for _, p in parts])
    masks = np.concatenate([p["masks"] for _, p in parts])
    if not masks.any():
        raise InputError(
            "None of the training patches contains a landslide pixel ("
            + "; ".join(f"{s.raster} with {_layer_name(s.labels, s.labels_layer)}" for s in sources)
            + "): a network cannot learn what a landslide looks like from negatives alone. Add "
              "landslide polygons, or check that they fall inside the reviewed areas and on valid pixels.")
    source = np.concatenate([np.full(len(p["rows"]), i, np.int64) for i, p in parts])
    rows = np.concatenate([p["rows"] for _, p in parts])
    cols = np.concatenate([p["cols"] for _, p in parts])
    keys = ("candidate", "kept", "dropped_unreviewed", "dropped_nodata", "dropped_empty")
    total = {k: sum(s[k] for s in per_source) for k in keys}
    total["positive_fraction"] = float(masks.mean()) if masks.size else 0.0
    return PatchSet(images, masks, source, rows, cols, channels, pixel_size,
                    {"sources": per_source, "total": total})


def _source_patches(src: TrainingSource, spectral, channels, size, stride, drop_empty, reporter):
    log = reporter.log
    if not Path(src.raster).is_file():
        raise InputError(f"The training raster {src.raster} does not exist or is not a file.")
    with YearRaster(src.raster, src.year or 0, src.bands, src.reflectance_scale, log=log) as raster:
        raster_bounds = _raster_bounds(raster)
        problem = crs_rules.metric_problem(raster.crs)
        if problem:
            log(f"{src.raster} is {crs_rules.describe(raster.crs)}, {problem}: patches are cut on its "
                "own grid, and its pixel size is given in its own units.")
        labels = _read_polygons(src.labels, src.labels_layer, "label layer", raster, log,
                                allow_empty=bool(src.reviewed))
        if len(labels) and not _touching(labels, raster_bounds).any():
            raise InputError(
                f"The landslide polygons of {_layer_name(src.labels, src.labels_layer)} lie outside "
                f"the raster {src.raster}: the labels cover {_fmt_bounds(shapely.total_bounds(labels))}, "
                f"the raster {_fmt_bounds(raster_bounds)} (in {crs_rules.describe(raster.crs)}). "
                "Check that both show the same place and that the layer's CRS is set right.")
        if src.reviewed:
            reviewed = _read_polygons(src.reviewed, src.reviewed_layer, "reviewed-area layer", raster, log)
            inside = _touching(reviewed, raster_bounds)
            if not inside.any():
                raise InputError(
                    f"The reviewed areas of {_layer_name(src.reviewed, src.reviewed_layer)} lie outside "
                    f"the raster {src.raster}: they cover {_fmt_bounds(shapely.total_bounds(reviewed))}, "
                    f"the raster {_fmt_bounds(raster_bounds)} (in {crs_rules.describe(raster.crs)}).")
            reviewed = reviewed[inside]
            hit = np.unique(shapely.STRtree(reviewed).query(labels, predicate="intersects")[0]) \
                if len(labels) else []
            if len(hit) < len(labels):
                log(f"{src.labels}: {len(labels) - len(hit)} of {len(labels)} landslide polygon(s) lie "
                    "outside every reviewed area and are ignored.")
            window = _pixel_window(raster, shapely.total_bounds(reviewed))
            where = f"the reviewed areas of {src.raster}"
        else:
            reviewed = None
            log(f"{src.raster}: no reviewed-area layer, so the whole raster counts as reviewed and "
                f"the labels in {src.labels} are assumed complete (every other pixel is a negative).")
            window = Window(0, 0, raster.width, raster.height)
            where = f"the raster {src.raster}"
        if window is None:  # reviewed polygons only touch the raster without covering a pixel
            raise InputError(f"The reviewed areas of {src.reviewed} cover no pixel of the raster {src.raster}.")
        h, w = int(window.height), int(window.width)
        if size > min(h, w):
            raise InputError(
                f"Patch size {size} px is larger than {where} ({w} × {h} px, width × height); "
                f"use {_largest_patch(min(h, w))}.")

        transform = raster.dataset.window_transform(window)
        data, valid = raster.read(window, spectral)
        stack = build_channels(data, channels)
        del data
        label = _burn(labels, window, transform)
        ok_review = _burn(reviewed, window, transform) if reviewed is not None else np.ones((h, w), bool)
        usable = ok_review & valid
        if not (label & usable).any() and reviewed is not None:
            # corrections that only removed false alarms: the reviewed area is all negatives
            log(f"{src.raster}: no landslide pixel of {_layer_name(src.labels, src.labels_layer)} is both "
                f"reviewed and valid ({int(label.sum())} labelled pixel(s) in the read window, "
                f"{int((label & ok_review).sum())} of them reviewed); its patches are used as negatives "
                "only (e.g. where false alarms were deleted).")
        elif not (label & usable).any():
            counts = f"{int(label.sum())} labelled pixel(s) in the read window"
            reasons = "they cover only nodata pixels"
            if reviewed is not None:
                counts += f", {int((label & ok_review).sum())} of them reviewed"
                reasons = "they lie outside the reviewed areas, " + reasons
            raise InputError(
                f"No landslide pixel of {_layer_name(src.labels, src.labels_layer)} falls on a usable "
                f"pixel of {src.raster} ({counts}, 0 also valid). Possible reasons: {reasons}, or "
                f"they are smaller than a pixel ({math.sqrt(raster.pixel_area):.3g} map units) so that "
                "no pixel centre falls inside them.")

        rs, cs = _starts(h, size, stride), _starts(w, size, stride)
        unreviewed = _patch_sums(~ok_review, rs, cs, size) > 0
        invalid = _patch_sums(~valid, rs, cs, size) > 0
        positive = _patch_sums(label, rs, cs, size) > 0
        keep = ~unreviewed & ~invalid
        stats = {
            "raster": src.raster, "labels": src.labels, "region": src.region, "year": src.year,
            "window": [int(window.col_off), int(window.row_off), w, h],
            "candidate": int(unreviewed.size),
            "dropped_unreviewed": int(unreviewed.sum()),
            "dropped_nodata": int((~unreviewed & invalid).sum()),
        }
        empty = keep & ~positive
        stats["dropped_empty"] = int(empty.sum()) if drop_empty else 0
        if drop_empty:
            keep &= positive
        if not keep.any():
            reasons = []
            if stats["dropped_unreviewed"]:
                reasons.append(f"{stats['dropped_unreviewed']} reach outside the reviewed areas")
            if stats["dropped_nodata"]:
                reasons.append(f"{stats['dropped_nodata']} contain nodata pixels")
            if stats["dropped_empty"]:
                reasons.append(f"{stats['dropped_empty']} contain no landslide pixel (drop_empty)")
            raise InputError(
                f"No training patch of {size} × {size} px is left from {src.raster}: of "
                f"{stats['candidate']} candidate(s), {'; '.join(reasons)}. Use a smaller patch size, "
                "reviewed areas of at least 1.5 patches across, or a raster with fewer nodata gaps.")
        ri, ci = np.nonzero(keep)
        prow, pcol = rs[ri], cs[ci]
        hwc = stack.transpose(1, 2, 0)
        images = np.empty((len(prow), size, size, len(channels)), np.float32)
        masks = np.empty((len(prow), size, size), np.uint8)
        for k, (r, c) in enumerate(zip(prow.tolist(), pcol.tolist())):  # per patch, not per pixel
            images[k] = hwc[r:r + size, c:c + size]
            masks[k] = label[r:r + size, c:c + size]
        stats["kept"] = int(len(prow))
        stats["positive_fraction"] = float(masks.mean())
        reporter.log(f"{src.raster}: {stats['kept']} of {stats['candidate']} patches kept "
                     f"({stats['dropped_unreviewed']} not fully reviewed, {stats['dropped_nodata']} with "
                     f"nodata, {stats['dropped_empty']} without landslides dropped); "
                     f"{100 * stats['positive_fraction']:.2f} % landslide pixels.")
        part = {"images": images, "masks": masks,
                "rows": prow + int(window.row_off), "cols": pcol + int(window.col_off)}
        return part, stats, math.sqrt(raster.pixel_area)


# -- validation split -------------------------------------------------------------------

def _overlaps(patches: PatchSet, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """For each index in ``train``: whether its footprint shares a pixel with a ``val`` patch.

    Patch origins lie on a few distinct rows/cols per source, so the val footprints'
    "overlap zones" are painted as rectangles (a 2-D difference array) on that compressed
    grid and each training patch looks its cell up: no pairwise comparison.
    """
    size = patches.patch_size
    out = np.zeros(len(train), bool)
    for s in np.unique(patches.source[val]):
        t = train[patches.source[train] == s]
        v = val[patches.source[val] == s]
        if not len(t):
            continue
        ur = np.unique(patches.rows[t])
        uc = np.unique(patches.cols[t])
        vr, vc = patches.rows[v], patches.cols[v]
        # training origins r with |r - vr| < size form the index range [r0, r1)
        r0, r1 = np.searchsorted(ur, vr - size, "right"), np.searchsorted(ur, vr + size, "left")
        c0, c1 = np.searchsorted(uc, vc - size, "right"), np.searchsorted(uc, vc + size, "left")
        diff = np.zeros((len(ur) + 1, len(uc) + 1), np.int64)
        np.add.at(diff, (r0, c0), 1)
        np.add.at(diff, (r1, c0), -1)
        np.add.at(diff, (r0, c1), -1)
        np.add.at(diff, (r1, c1), 1)
        cover = diff.cumsum(0).cumsum(1)
        hit = cover[np.searchsorted(ur, patches.rows[t]), np.searchsorted(uc, patches.cols[t])] > 0
        out[np.flatnonzero(patches.source[train] == s)] = hit
    return out


def split_patches(patches: PatchSet, fraction: float = 0.2, method: str = "blocked", seed: int = 0,
                  block: int | None = None, reporter: Reporter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation patch indices (sorted), deterministic for a seed.

    ``"blocked"``: space is cut into ``block``-pixel squares (default 4 patches) per
    source; whole blocks, shuffled, go to validation until about ``fraction`` of the
    patches, a patch belonging to the block of its centre. Training patches overlapping
    any validation patch are then dropped, so no pixel is in both sets (which costs a
    rim of training patches around each validation block). If that leaves a set empty,
    a single, most isolated validation patch is tried; only if even that overlaps every
    other patch are overlapping sets returned (logged).

    ``"random"``: patches drawn at random. With overlapping patches (stride < patch
    size) validation pixels also appear in training patches, so the validation score is
    optimistic: use it only to compare with older runs.
    """
    log = (reporter or Reporter()).log
    n = len(patches)
    if n < 2:
        raise InputError(f"Only {n} training patch(es): at least 2 are needed to hold some out for "
                         "validation. Use a smaller patch size or stride, or add reviewed areas.")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"Validation fraction must lie in (0, 1), got {fraction}.")
    rng = np.random.default_rng(seed)
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    if method == "random":
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    if method != "blocked":
        raise InputError(f"Validation split must be 'blocked' or 'random', not {method!r}.")

    size = patches.patch_size
    block = int(block or 4 * size)
    if block < 1:
        raise InputError(f"Block size must be positive, got {block}.")
    centre = size // 2
    keys = np.stack([patches.source, (patches.rows + centre) // block, (patches.cols + centre) // block], 1)
    _, block_of, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    block_of = block_of.ravel()
    order = rng.permutation(len(counts))
    taken = np.cumsum(counts[order])
    n_blocks = int(np.searchsorted(taken, n_val)) + 1      # first prefix reaching n_val patches
    is_val = np.isin(block_of, order[:n_blocks])
    val = np.flatnonzero(is_val)
    train = np.flatnonzero(~is_val)
    if len(train):
        train = train[~_overlaps(patches, train, val)]
    if len(train) and len(val):
        dropped = int((~is_val).sum()) - len(train)
        log(f"Blocked validation split: {len(val)} validation patch(es) in {n_blocks} of {len(counts)} "
            f"block(s) of {block} px, {len(train)} training patch(es); {dropped} training patch(es) "
            "overlapping validation ones dropped.")
        return train, val

    # Fallback: one validation patch, the one overlapping the fewest others.
    everyone = np.arange(n)
    if n <= 4000:
        r, c, s = patches.rows, patches.cols, patches.source
        pair = ((s[:, None] == s[None]) & (np.abs(r[:, None] - r[None]) < size)
                & (np.abs(c[:, None] - c[None]) < size))
        n_overlap = pair.sum(1)
    else:  # huge single-block sets: any patch will do, it only costs more overlap
        n_overlap = np.zeros(n, int)
    best = np.flatnonzero(n_overlap == n_overlap.min())
    j = int(rng.choice(best))
    val = np.array([j])
    rest = everyone[everyone != j]
    train = rest[~_overlaps(patches, rest, val)]
    if len(train):
        log(f"Blocked validation split: the {len(counts)} block(s) of {block} px leave no training patch "
            f"once overlaps are removed; holding out one patch instead ({len(train)} for training).")
        return train, val
    log(f"Blocked validation split impossible: all {n} patches overlap each other. Validation uses "
        "one patch whose pixels also appear in training patches, so its score is optimistic; "
        "add data or use a smaller patch size.")
    return rest, val


def normalisation(patches: PatchSet, idx: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (floored at 1e-3) of the chosen patches.

    Accumulated in float64 over chunks of patches, so large sets need no float64 copy.
    """
    idx = np.arange(len(patches)) if idx is None else np.asarray(idx)
    if not len(idx):
        raise InputError("No patches to compute the normalisation from.")
    c = patches.images.shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    # shift by a first-patch mean: sums of squares of centred values lose less precision
    shift = patches.images[idx[0]].reshape(-1, c).mean(0, dtype=np.float64)
    for start in range(0, len(idx), 32):
        chunk = patches.images[idx[start:start + 32]].reshape(-1, c).astype(np.float64) - shift
        total += chunk.sum(0)
        total_sq += np.square(chunk).sum(0)
        count += chunk.shape[0]
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0)
    std = np.maximum(np.sqrt(var), STD_FLOOR)
    return (mean + shift).tolist(), std.tolist()


# -- augmentation -----------------------------------------------------------------------

_AUGMENT_LOCK = threading.Lock()


def _pipeline(photometric: bool):
    # albumentations >= 1.4.2x asks PyPI for a newer release when imported: never from a worker
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    border = cv2.BORDER_REFLECT_101
    # albumentations 1.3 (the numpy 1 pins) or 1.4 (the numpy 2 pins), which ignores ``mode``
    # for ``border_mode`` and clips sharpened floats
    legacy = "border_mode" not in inspect.signature(A.Affine).parameters
    steps = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        # one warp for rotation and shear: each resampling blurs the image a little
        A.Affine(rotate=(-45, 45), shear=(-20, 20), interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=cv2.INTER_NEAREST, p=0.5,
                 **{"mode" if legacy else "border_mode": border}),
    ]
    if photometric:
        steps += [
            # blur_limit 0: kernel size from sigma; a sigma near 0 gives a 1-pixel kernel
            A.GaussianBlur(blur_limit=0, sigma_limit=(1e-3, 3.0), p=0.25),
            # lightness 1: the kernel sums to 1, so mean reflectance is unchanged; from 1.4 on
            # A.Sharpen clips floats to [0, 1], which would flatten negative NDVI
            A.Sharpen(alpha=(0.1, 0.4), lightness=(1.0, 1.0), p=0.25) if legacy
            else A.Lambda(image=_sharpen, p=0.25),
        ]
    return A.Compose(steps)


def _sharpen(image: np.ndarray, **_) -> np.ndarray:
    """A.Sharpen(alpha=(0.1, 0.4), lightness=1) of albumentations 1.3, without clipping: a 3×3
    kernel summing to 1, alpha drawn from the global numpy state the augmenter seeds."""
    import cv2

    alpha = np.random.uniform(0.1, 0.4)
    kernel = np.full((3, 3), -alpha, np.float32)
    kernel[1, 1] = 1.0 + 8.0 * alpha
    out = np.empty_like(image)
    for c in range(image.shape[-1]):        # any number of channels
        out[..., c] = cv2.filter2D(image[..., c], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out


def make_augmenter(seed: int = 0, photometric: bool = True
                   ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function (image (P,P,C) float32, mask (P,P) uint8) -> augmented copies, same shapes.

    Geometric transforms move image and mask together (mask: nearest neighbour).
    Rotated/sheared corners are filled by mirroring (BORDER_REFLECT_101) in both image
    and mask: a constant 0 would paint zero-reflectance pixels that look like nodata, and
    mirroring copies each scar together with its label, so no landslide pixel appears
    without its spectral evidence. Blur and sharpening touch the image only.

    albumentations 1.3.1 draws from the global ``random`` (and ``np.random``) state, 1.4 from
    the pipeline's own generator, so each call seeds all three from this augmenter's own
    generator and restores the global ones after,
    under a lock: the sequence of outputs depends only on ``seed``, and other code's
    random streams are left as they were (a thread using them during the call would see
    the temporary state). Channel count is free: more than 4 channels are processed by
    albumentations in chunks of 4, which the tests check.
    """
    pipeline = _pipeline(photometric)
    rng = np.random.default_rng(seed)

    def augment(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        with _AUGMENT_LOCK:
            call_seed = int(rng.integers(0, 2**32))
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                random.seed(call_seed)
                np.random.seed(call_seed)
                if hasattr(pipeline, "set_random_seed"):    # 1.4 on: the pipeline's own generator
                    pipeline.set_random_seed(call_seed)
                out = pipeline(image=image, mask=mask)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        img, msk = out["image"], out["mask"]
        if img.ndim == 2:  # a single channel may come back without its axis
            img = img[..., None]
        # when no transform fired albumentations hands the inputs back: never return them
        img = img.astype(np.float32, copy=np.shares_memory(img, image))
        msk = msk.astype(np.uint8, copy=np.shares_memory(msk, mask))
        return img, msk

    return augment
