"""Pixel accuracy of predicted polygons against reference polygons on a raster grid.

Both inventories are rasterised window by window on the grid of a probability raster,
and only its valid (non-nodata) pixels count, so clouds-free nodata collars do not turn
into false negatives.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.windows import Window

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

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "iou": self.iou, "mcc": self.mcc}


def _burn(tree: shapely.STRtree, geoms: np.ndarray, bounds, shape, transform) -> np.ndarray:
    hits = tree.query(shapely.box(*bounds))
    if not len(hits):
        return np.zeros(shape, bool)
    return rasterio.features.rasterize(((g, 1) for g in geoms[hits]), out_shape=shape,
                                       transform=transform, fill=0, dtype="uint8").astype(bool)


def pixel_scores(grid_raster: str | os.PathLike, predicted: np.ndarray, reference: np.ndarray) -> PixelScores:
    """Confusion counts of ``predicted`` vs ``reference`` polygons on the raster's valid pixels."""
    predicted = np.asarray(predicted, dtype=object)
    reference = np.asarray(reference, dtype=object)
    p_tree, r_tree = shapely.STRtree(predicted), shapely.STRtree(reference)
    tp = fp = fn = tn = 0
    with rasterio.open(grid_raster) as ds:
        for row in range(0, ds.height, WINDOW):
            for col in range(0, ds.width, WINDOW):
                win = Window(col, row, min(WINDOW, ds.width - col), min(WINDOW, ds.height - row))
                valid = ds.read_masks(1, window=win) > 0
                tf = ds.window_transform(win)
                bounds = rasterio.windows.bounds(win, ds.transform)
                shape = (int(win.height), int(win.width))
                p = _burn(p_tree, predicted, bounds, shape, tf) & valid
                r = _burn(r_tree, reference, bounds, shape, tf) & valid
                tp += int(np.count_nonzero(p & r))
                fp += int(np.count_nonzero(p & ~r))
                fn += int(np.count_nonzero(~p & r))
                tn += int(np.count_nonzero(valid & ~p & ~r))
    return PixelScores(tp, fp, fn, tn)
