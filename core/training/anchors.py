"""Anchor patches: unreviewed ground of the training images, labelled by the base checkpoint.

A fine-tuning learns only from the reviewed areas, and on the held-out Dolomites it made
the unseen half of the images worse where the base had been right (pre-event year F1 0.89
→ 0.43, 3.2 times the true area): what it learnt from one corrected half carried over
badly, and its validation patches, from the same half, could not tell. The rest of the
images is still there, and nobody has said the base is wrong on it. So patches are
sampled from ground no reviewed area touches, the base checkpoint's decisions on them
become their targets, and the loss weighs them by ``TrainJob.distill_weight``. They are
trusted as far as the base proved right where it was checked: a share of them equal to
its F1 on the validation patches is trained on, so a base that fails on this ground
(Zion: F1 0.13) neither teaches its misses back nor takes the corrections' place in the
batches; where the two disagree on like ground, the corrections win. The same patches measure how
far the new checkpoint strays from its base where nobody checked (:func:`drift`), which
the log, the model card, the dock and Processing report whether or not they were trained
on (``checkpoint.unreviewed_text``).

Pure numpy + rasterio + shapely; no Qt, QGIS or TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import shapely
from rasterio.windows import Window

from ..geodata.bands import build_channels, required_spectral
from ..geodata.raster import YearRaster, apply_transform
from ..jobs.specs import TrainingSource
from ..progress import Reporter
from .patches import MIN_KNOWN, read_polygons

ANCHOR_SHARE = 1.0     # anchor patches per labelled training patch (as many, where the ground allows)
Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (images, valid) → base probabilities


@dataclass
class Anchors:
    """``images`` in reflectance units like ``PatchSet.images``; ``base`` the base checkpoint's
    landslide decision per pixel; ``source`` the training source each patch was cut from."""

    images: np.ndarray      # (K, P, P, C) float32
    valid: np.ndarray       # (K, P, P) bool
    base: np.ndarray        # (K, P, P) bool
    source: np.ndarray      # (K,) int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx) -> "Anchors":
        idx = np.sort(np.asarray(idx, np.int64))
        return Anchors(self.images[idx], self.valid[idx], self.base[idx], self.source[idx])


def unreviewed_cells(raster: YearRaster, reviewed: np.ndarray, size: int,
                     stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Origins (rows, cols) of the ``size`` px cells of the raster, ``stride`` apart (default
    half a cell, as training patches overlap), whose inside no reviewed polygon reaches."""
    stride = stride or max(1, size // 2)
    rows = np.arange(0, raster.height - size + 1, stride, dtype=np.int64)
    cols = np.arange(0, raster.width - size + 1, stride, dtype=np.int64)
    if not len(rows) or not len(cols):
        return rows[:0], cols[:0]
    r, c = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    corners = [apply_transform(raster.transform, c + dc, r + dr)
               for dc, dr in ((0, 0), (size, 0), (size, size), (0, size))]
    ring = np.stack([np.stack(xy, -1) for xy in corners], 1)          # (n, 4, 2)
    cells = shapely.polygons(ring)
    if len(reviewed):
        cell, poly = shapely.STRtree(reviewed).query(cells, predicate="intersects")
        inside = ~shapely.touches(cells[cell], reviewed[poly])      # a shared edge is not review
        keep = np.ones(len(cells), bool)
        keep[cell[inside]] = False
        r, c = r[keep], c[keep]
    return r, c


def sample_anchors(sources: Sequence[TrainingSource], channels: Sequence[str], size: int, count: int,
                   predict: Predict, threshold: float, seed: int, reporter: Reporter) -> Anchors | None:
    """Up to ``count`` anchor patches, spread evenly over the sources that have unreviewed
    ground (a source without a reviewed-area layer counts as reviewed everywhere). A patch
    needs :data:`MIN_KNOWN` of its pixels valid. None when there is no such ground."""
    with_review = [i for i, s in enumerate(sources) if s.reviewed]
    if count < 1 or not with_review:
        return None
    rng = np.random.default_rng(seed)
    quota = math.ceil(count / len(with_review))
    spectral = required_spectral(channels)
    images, valid, source = [], [], []
    for i in with_review:
        reporter.check_cancelled()
        src = sources[i]
        with YearRaster(src.raster, src.year or 0, src.bands, src.reflectance_scale) as raster:
            reviewed = read_polygons(src.reviewed, src.reviewed_layer, "reviewed-area layer", raster,
                                      lambda _m: None)
            rows, cols = unreviewed_cells(raster, reviewed, size)
            order = rng.permutation(len(rows))[:3 * quota]        # a few spares for nodata cells
            taken = 0
            for k in order.tolist():
                if taken == quota:
                    break
                data, ok = raster.read(Window(int(cols[k]), int(rows[k]), size, size), spectral)
                if ok.mean() < MIN_KNOWN:
                    continue
                images.append(build_channels(data, channels).transpose(1, 2, 0))
                valid.append(ok)
                source.append(i)
                taken += 1
    if not images:
        return None
    img = np.stack(images).astype(np.float32, copy=False)
    ok = np.stack(valid)
    base = (predict(img, ok) >= threshold) & ok
    reporter.log(f"Anchors: {len(img)} patches of unreviewed ground from {len(set(source))} image(s) carry the base's "
                 f"mapping ({100 * base[ok].mean():.2f} % landslide pixels).")
    return Anchors(img, ok, base, np.asarray(source, np.int64))


def drift(anchors: Anchors, new: np.ndarray) -> dict[str, float | int | None]:
    """How the new checkpoint's decisions ``new`` (K, P, P) differ from the base's on the
    anchor patches: each one's share of landslide pixels, their ratio, and the F1 of the new
    decisions against the base's (1 = the same map)."""
    ok = anchors.valid
    base, new = anchors.base & ok, new & ok
    n = max(int(ok.sum()), 1)
    tp = int((base & new).sum())
    nb, nn = int(base.sum()), int(new.sum())
    return {"patches": len(anchors), "base_share": round(nb / n, 5), "new_share": round(nn / n, 5),
            "area_ratio": round(nn / nb, 3) if nb else None,
            "agreement_f1": round(2 * tp / (nb + nn), 4) if nb + nn else 1.0}
