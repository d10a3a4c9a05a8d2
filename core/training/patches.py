"""Training patches from (raster, landslide polygons, reviewed-area polygons) sources.

Labels are only trustworthy where someone looked: inside the reviewed-area polygons every
pixel that is not a landslide is a known negative, outside them nothing is known. So a
patch is kept when enough of its pixels (``MIN_KNOWN``) are reviewed and valid, and the
others are masked out of the loss; the validation split (core/training/split.py) keeps
training and validation pixels apart, since overlapping patches would otherwise leak
validation pixels into training.

Pure numpy + rasterio + shapely (+ albumentations for augmentation, imported lazily); no
Qt, QGIS or TensorFlow, so the worker process and the tests can use it as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio.features
import shapely
from rasterio.windows import Window

from ..geodata import crs as crs_rules
from ..geodata.bands import build_channels, required_spectral
from ..errors import InputError
from ..inventory.series import parse_crs, to_crs
from ..jobs.specs import TrainingSource
from ..progress import Reporter
from ..geodata.raster import YearRaster, apply_transform
from ..geodata.vector_io import read_layer

STD_FLOOR = 1e-3
MIN_KNOWN = 0.25             # a patch is kept when at least this share of its pixels is labelled
ROLES = ("auto", "train", "validation")
_POLYGONAL = (3, 6)          # shapely type ids: Polygon, MultiPolygon
_COLLECTION = 7


@dataclass
class PatchSet:
    """Patches of all sources, in NHWC order for Keras.

    ``images`` hold the model's channels in reflectance units (NDVI in [-1, 1]), not
    normalised; ``masks`` the labels (0/1), counted only where ``known``; pixels outside
    ``valid`` carry no image data (the training loop blanks them as inference does).
    :func:`normalisation` gives the statistics, ideally of the training subset only.
    ``stats`` is ``{"sources": [per-source dict], "total": dict}``, each with candidate /
    kept / partial / dropped_unreviewed / dropped_nodata / dropped_empty counts and the
    positive pixel fraction of the labelled pixels of the kept patches. ``role`` says per
    patch whether its source may hold validation patches (see :func:`split_patches`).
    """

    images: np.ndarray
    masks: np.ndarray
    source: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    channels: list[str]
    pixel_size: list[float]
    stats: dict = field(default_factory=dict)
    known: np.ndarray | None = None     # (N, P, P) bool: label known (valid and reviewed); None: all
    valid: np.ndarray | None = None     # (N, P, P) bool: image data valid; None: all
    role: np.ndarray | None = None      # (N,) str per patch: "auto", "train" or "validation"

    def __post_init__(self):
        shape = self.masks.shape
        if self.known is None:
            self.known = np.ones(shape, bool)
        if self.valid is None:
            self.valid = np.ones(shape, bool)
        if self.role is None:
            self.role = np.full(len(self.masks), "auto")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.images.shape[1])


# -- vector input -----------------------------------------------------------------------

def _layer_name(path: str, layer: str | None) -> str:
    return f"layer {layer!r} of {path}" if layer else f"the first layer of {path}"


def read_polygons(path: str, layer: str | None, what: str, raster: YearRaster,
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
    corners = np.array([apply_transform(inv, x, y) for x in (x0, x1) for y in (y0, y1)])
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


# -- patches ----------------------------------------------------------------------------

def prepare_patches(sources: Sequence[TrainingSource], channels: Sequence[str], patch_size: int = 128,
                    stride: int | None = None, drop_empty: bool = False,
                    reporter: Reporter | None = None) -> PatchSet:
    """Cut every source into ``patch_size`` patches holding at least :data:`MIN_KNOWN` labelled pixels.

    A pixel's label is known where it is valid and reviewed; the rest of a patch is kept
    as context but left out of the loss, so irregular reviewed areas, nodata gaps and images
    smaller than a patch (padded) still teach. Only the window spanning the reviewed areas
    is read (the whole raster when a source has no reviewed-area layer, which means its
    labels are taken as complete).
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
    known = np.concatenate([p["known"] for _, p in parts])
    valid = np.concatenate([p["valid"] for _, p in parts])
    if not (masks & known).any():
        raise InputError(
            "None of the training patches contains a landslide pixel ("
            + "; ".join(f"{s.raster} with {_layer_name(s.labels, s.labels_layer)}" for s in sources)
            + "): a network cannot learn what a landslide looks like from negatives alone. Add "
              "landslide polygons, or check that they fall inside the reviewed areas and on valid pixels.")
    source = np.concatenate([np.full(len(p["rows"]), i, np.int64) for i, p in parts])
    rows = np.concatenate([p["rows"] for _, p in parts])
    cols = np.concatenate([p["cols"] for _, p in parts])
    role = np.concatenate([np.full(len(p["rows"]), sources[i].split) for i, p in parts])
    keys = ("candidate", "kept", "partial", "dropped_unreviewed", "dropped_nodata", "dropped_empty")
    total = {k: sum(s[k] for s in per_source) for k in keys}
    total["positive_fraction"] = float(masks[known].mean()) if known.any() else 0.0
    return PatchSet(images, masks, source, rows, cols, channels, pixel_size,
                    {"sources": per_source, "total": total}, known, valid, role)


def _source_patches(src: TrainingSource, spectral, channels, size, stride, drop_empty, reporter):
    log = reporter.log
    if not Path(src.raster).is_file():
        raise InputError(f"The training raster {src.raster} does not exist or is not a file.")
    with YearRaster(src.raster, src.year or 0, src.bands, src.reflectance_scale, log=log) as raster:
        raster_bounds = _raster_bounds(raster)
        for text in raster.inspect(spectral):      # the same suspicions as for mapping
            reporter.warn(text)
        problem = crs_rules.metric_problem(raster.crs)
        if problem:
            log(f"{src.raster} is {crs_rules.describe(raster.crs)}, {problem}: patches are cut on its "
                "own grid, and its pixel size is given in its own units.")
        labels = read_polygons(src.labels, src.labels_layer, "label layer", raster, log,
                                allow_empty=bool(src.reviewed))
        if len(labels) and not _touching(labels, raster_bounds).any():
            raise InputError(
                f"The landslide polygons of {_layer_name(src.labels, src.labels_layer)} lie outside "
                f"the raster {src.raster}: the labels cover {_fmt_bounds(shapely.total_bounds(labels))}, "
                f"the raster {_fmt_bounds(raster_bounds)} (in {crs_rules.describe(raster.crs)}). "
                "Check that both show the same place and that the layer's CRS is set right.")
        if src.reviewed:
            reviewed = read_polygons(src.reviewed, src.reviewed_layer, "reviewed-area layer", raster, log)
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
        transform = raster.window_transform(window)
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

        if h < size or w < size:       # smaller than a patch: pad, the padding is unknown
            ph, pw = max(0, size - h), max(0, size - w)
            stack = np.pad(stack, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
            label, valid, ok_review = (np.pad(a, ((0, ph), (0, pw))) for a in (label, valid, ok_review))
            log(f"{where} is {w} × {h} px, smaller than a {size} px patch: padded, the padding left out "
                "of the loss.")
            h, w = h + ph, w + pw
        known = ok_review & valid
        rs, cs = _starts(h, size, stride), _starts(w, size, stride)
        need = MIN_KNOWN * size * size
        n_known = _patch_sums(known, rs, cs, size)
        n_reviewed = _patch_sums(ok_review, rs, cs, size)
        full = n_known == size * size
        positive = _patch_sums(label & known, rs, cs, size) > 0
        keep = n_known >= need
        unreviewed = ~keep & (n_reviewed < need)
        stats = {
            "raster": src.raster, "labels": src.labels, "region": src.region, "year": src.year,
            "split": src.split, "window": [int(window.col_off), int(window.row_off), w, h],
            "candidate": int(keep.size),
            "dropped_unreviewed": int(unreviewed.sum()),
            "dropped_nodata": int((~keep & ~unreviewed).sum()),
        }
        empty = keep & ~positive
        stats["dropped_empty"] = int(empty.sum()) if drop_empty else 0
        if drop_empty:
            keep &= positive
        if not keep.any():
            reasons = []
            if stats["dropped_unreviewed"]:
                reasons.append(f"{stats['dropped_unreviewed']} lie mostly outside the reviewed areas")
            if stats["dropped_nodata"]:
                reasons.append(f"{stats['dropped_nodata']} are mostly nodata")
            if stats["dropped_empty"]:
                reasons.append(f"{stats['dropped_empty']} contain no landslide pixel (drop_empty)")
            raise InputError(
                f"No training patch of {size} × {size} px is left from {src.raster}: of "
                f"{stats['candidate']} candidate(s), {'; '.join(reasons)} (a patch needs "
                f"{MIN_KNOWN:.0%} of its pixels reviewed and valid). Use a smaller patch size, larger "
                "reviewed areas, or a raster with fewer nodata gaps.")
        ri, ci = np.nonzero(keep)
        prow, pcol = rs[ri], cs[ci]
        hwc = stack.transpose(1, 2, 0)
        n_p = len(prow)
        images = np.empty((n_p, size, size, len(channels)), np.float32)
        masks = np.empty((n_p, size, size), np.uint8)
        known_p = np.empty((n_p, size, size), bool)
        valid_p = np.empty((n_p, size, size), bool)
        for k, (r, c) in enumerate(zip(prow.tolist(), pcol.tolist())):  # per patch, not per pixel
            images[k] = hwc[r:r + size, c:c + size]
            masks[k] = label[r:r + size, c:c + size]
            known_p[k] = known[r:r + size, c:c + size]
            valid_p[k] = valid[r:r + size, c:c + size]
        masks &= known_p
        stats["kept"] = int(n_p)
        stats["partial"] = int((~full[ri, ci]).sum())
        stats["positive_fraction"] = float(masks[known_p].mean()) if known_p.any() else 0.0
        reporter.log(f"{src.raster}: {stats['kept']} of {stats['candidate']} patches kept ({stats['partial']} "
                     f"partly unlabelled, that part left out of the loss; {stats['dropped_unreviewed']} mostly "
                     f"unreviewed, {stats['dropped_nodata']} mostly nodata, {stats['dropped_empty']} without "
                     f"landslides dropped); {100 * stats['positive_fraction']:.2f} % landslide pixels.")
        part = {"images": images, "masks": masks, "known": known_p, "valid": valid_p,
                "rows": prow + int(window.row_off), "cols": pcol + int(window.col_off)}
        return part, stats, math.sqrt(raster.pixel_area)


def normalisation(patches: PatchSet, idx: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (floored at 1e-3) of the chosen patches' valid pixels.

    Accumulated in float64 over chunks of patches, so large sets need no float64 copy.
    """
    idx = np.arange(len(patches)) if idx is None else np.asarray(idx)
    if not len(idx):
        raise InputError("No patches to compute the normalisation from.")
    c = patches.images.shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    first = patches.images[idx[0]][patches.valid[idx[0]]]
    # shift by a first-patch mean: sums of squares of centred values lose less precision
    shift = first.mean(0, dtype=np.float64) if len(first) else np.zeros(c)
    for start in range(0, len(idx), 32):
        sel = idx[start:start + 32]
        chunk = patches.images[sel][patches.valid[sel]].astype(np.float64) - shift
        total += chunk.sum(0)
        total_sq += np.square(chunk).sum(0)
        count += chunk.shape[0]
    if not count:
        raise InputError("The chosen patches hold no valid pixel to compute the normalisation from.")
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0)
    std = np.maximum(np.sqrt(var), STD_FLOOR)
    return (mean + shift).tolist(), std.tolist()
