"""Where to correct next: the windows of a mapped year where the model is least sure.

A correction teaches the model most where its predictions sit near the threshold (or,
with test-time augmentation, where the flipped predictions disagree): that is where the
next fine-tuning moves the decision boundary. The uncertainty raster written by the
mapping (:func:`inference.uncertainty`) is averaged over square windows, read strip by
strip so memory stays flat; the highest-scoring windows, no two touching, become a small
polygon layer of suggested review areas, ranked, to digitise in and use as reviewed
areas for fine-tuning.
"""
from __future__ import annotations

import os

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from . import probability
from ..geodata.raster import apply_transform
from ..geodata.vector_io import VectorLayer

MIN_VALID = 0.5        # a window needs this share of valid pixels to be suggested


def _window_sums(path, window: int, fn) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the sum of ``fn(values, nodata)`` over valid pixels, and the valid count."""
    with rasterio.open(path) as ds:
        nodata = probability.nodata_of(ds)
        rows, cols = -(-ds.height // window), -(-ds.width // window)
        sums = np.zeros((rows, cols))
        counts = np.zeros((rows, cols))
        for i in range(rows):
            h = min(window, ds.height - i * window)
            strip = ds.read(1, window=Window(0, i * window, ds.width, h))
            ok = strip != nodata
            vals = np.where(ok, fn(strip, nodata), 0.0)
            pad = cols * window - ds.width
            vals = np.pad(vals, ((0, 0), (0, pad)))
            ok = np.pad(ok, ((0, 0), (0, pad)))
            sums[i] = vals.reshape(h, cols, window).sum(axis=(0, 2))
            counts[i] = ok.reshape(h, cols, window).sum(axis=(0, 2))
    return sums, counts


def suggest_review_areas(uncertainty_path: str | os.PathLike, probability_path: str | os.PathLike, year: int,
                         threshold: float, window: int = 256, count: int = 10,
                         crs_wkt: str | None = None) -> VectorLayer:
    """Up to ``count`` windows of ``window`` px with the highest mean uncertainty, no two
    touching; fields ``rank`` (1 = review first), ``year``, ``uncertainty`` (mean, 0-1),
    ``landslide_share`` (share of the window mapped as landslide), ``valid_share``."""
    unc_sum, valid = _window_sums(uncertainty_path, window, lambda v, _nd: v.astype(np.float64) / 254.0)
    slide_sum, _ = _window_sums(probability_path, window,
                                lambda v, nd: probability.landslide(v, threshold, nd).astype(np.float64))
    full = float(window * window)
    with rasterio.open(uncertainty_path) as ds:
        transform, height, width = ds.transform, ds.height, ds.width
    # edge windows are smaller: their share of valid pixels counts their own size
    sizes = np.outer(np.minimum(window, height - np.arange(unc_sum.shape[0]) * window),
                     np.minimum(window, width - np.arange(unc_sum.shape[1]) * window)).astype(float)
    share = valid / np.maximum(sizes, 1)
    score = np.where((share >= MIN_VALID) & (sizes >= full / 4), unc_sum / np.maximum(valid, 1), -1.0)
    blocked = np.zeros(score.shape, bool)
    picks = []
    for flat in np.argsort(-score, axis=None, kind="stable"):
        r, c = divmod(int(flat), score.shape[1])
        if score[r, c] <= 0 or len(picks) >= count:
            break
        if blocked[r, c]:
            continue
        picks.append((r, c))
        blocked[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = True
    geoms, fields = [], {"rank": [], "year": [], "uncertainty": [], "landslide_share": [], "valid_share": []}
    for k, (r, c) in enumerate(picks, start=1):
        c0, r0 = c * window, r * window
        c1, r1 = min(width, c0 + window), min(height, r0 + window)
        x0, y0 = apply_transform(transform, c0, r0)
        x1, y1 = apply_transform(transform, c1, r1)
        geoms.append(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        fields["rank"].append(k)
        fields["year"].append(int(year))
        fields["uncertainty"].append(round(float(score[r, c]), 4))
        fields["landslide_share"].append(round(float(slide_sum[r, c] / max(valid[r, c], 1)), 4))
        fields["valid_share"].append(round(float(share[r, c]), 4))
    arr = np.asarray(geoms, dtype=object) if geoms else np.empty(0, dtype=object)
    return VectorLayer(arr, {k: np.asarray(v) for k, v in fields.items()}, crs_wkt)
