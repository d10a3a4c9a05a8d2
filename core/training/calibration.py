"""Scores on validation pixels, and the probability threshold a checkpoint maps with: the
one with the best validation F1, searched over the whole range (core/training/loop.py stores
it in the checkpoint)."""
from __future__ import annotations

import math

import numpy as np

from ..inventory.metrics import PixelScores


def validation_scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Pixel scores; None where undefined (e.g. recall without any landslide pixel), as JSON has no NaN."""
    s = PixelScores(tp, fp, fn, 0)
    return {k: (None if math.isnan(v) else v)
            for k, v in (("precision", s.precision), ("recall", s.recall), ("f1", s.f1), ("iou", s.iou))}


def score_text(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


# The F1-optimal threshold is searched on a grid even in logit space, 0.01 apart: from
# 1e-7 to 1 - 1e-7 (what a float32 sigmoid can tell from 0 and 1), fine near 0 and 1
# where nearly binary outputs put all the choice. (The RGB checkpoint was calibrated when
# the grid ended at 1 - 1e-4, and its best threshold sat there.)
THRESHOLD_LOGITS = np.linspace(-16.0, 16.0, 3201)
THRESHOLDS = 1.0 / (1.0 + np.exp(-THRESHOLD_LOGITS))


def calibrate_threshold(probs: np.ndarray, truth: np.ndarray, default: float = 0.5,
                        known: np.ndarray | None = None):
    """The probability threshold with the best F1 on these pixels, and the scores there.

    Tversky losses with α > β deliberately favour recall, so 0.5 is rarely the F1-optimal
    cut; the threshold travels in the checkpoint and mapping uses it. The search covers
    the whole range (see ``THRESHOLDS``), counted with two histograms, so it cannot stop at
    a ceiling while the model still over-predicts. Only ``known`` pixels count. Without
    landslide pixels the default is kept. Ties go to the value nearest 0.5."""
    probs = np.asarray(probs, np.float32)
    truth = np.asarray(truth, bool)
    if known is not None:
        probs, truth = probs[known], truth[known]
    if not truth.any():
        return default, validation_scores(0, int(np.count_nonzero(probs >= default)), 0)
    # pixels with p >= THRESHOLDS[i] are those in bins >= i
    bins = np.searchsorted(THRESHOLDS, probs.ravel(), side="right")
    pos = np.bincount(bins[truth.ravel()], minlength=len(THRESHOLDS) + 1)
    neg = np.bincount(bins[~truth.ravel()], minlength=len(THRESHOLDS) + 1)
    tp = pos[::-1].cumsum()[::-1][1:]
    fp = neg[::-1].cumsum()[::-1][1:]
    fn = int(truth.sum()) - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-9)
    i = int(best[np.argmin(np.abs(THRESHOLD_LOGITS[best]))])
    # not rounded: near 1 the grid's steps are far below 1e-6
    return float(THRESHOLDS[i]), validation_scores(int(tp[i]), int(fp[i]), int(fn[i]))
