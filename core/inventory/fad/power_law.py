"""The power-law tail (Clauset, Shalizi & Newman 2009): continuous maximum-likelihood α for
every candidate x_min, x_min where the Kolmogorov-Smirnov distance is smallest, vectorised;
optional bootstrap."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...json_values import plain
from .common import _dataclass_dict, clean_areas


def power_law_pdf(x, alpha: float, x_min: float) -> np.ndarray:
    """Continuous power-law density ``(α-1)/x_min · (x/x_min)^-α`` for ``x ≥ x_min``, else 0."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(x >= x_min, (alpha - 1.0) / x_min * (x / x_min) ** (-alpha), 0.0)


@dataclass
class PowerLawFit:
    """Maximum-likelihood power-law tail ``p(A) ∝ A^-alpha`` for ``A ≥ x_min``.

    ``alpha_se`` is the asymptotic standard error ``(α-1)/√n_tail``; ``ks_distance`` the KS
    distance at the chosen x_min. With a bootstrap, ``x_min_error``/``alpha_error`` are the
    standard deviations of the bootstrap estimates (Clauset's plvar), otherwise None.
    """
    x_min: float
    alpha: float
    alpha_se: float
    ks_distance: float
    n_tail: int
    n: int
    x_min_error: Optional[float] = None
    alpha_error: Optional[float] = None
    n_bootstrap: int = 0
    candidates_scanned: int = 0
    exhaustive: bool = True

    @property
    def tail_fraction(self) -> float:
        return self.n_tail / self.n if self.n else float("nan")

    def pdf(self, x) -> np.ndarray:
        return power_law_pdf(x, self.alpha, self.x_min)

    def to_dict(self) -> dict:
        d = _dataclass_dict(self)
        d["tail_fraction"] = plain(self.tail_fraction)
        return d


def _ks_scan(x_sorted: np.ndarray, max_candidates: int, block_elems: int = 1_000_000):
    """KS distance and MLE α for x_min candidates of sorted positive data.

    Candidates are the distinct values except the largest. The empirical cdf of the tail at
    each distinct value v ≥ x_min is the fraction of tail values strictly below v (the
    convention of the ``powerlaw`` package; Clauset's plfit agrees when no two areas are
    equal, and with ties also compares the last value of each run). When there are more than
    ``max_candidates`` candidates, an evenly spaced (in rank) subset is scanned first and the
    neighbourhood of its best candidate is then scanned completely.

    Returns ``(best candidate index into uniq, uniq, first, alpha, D, n_tail, n_scanned)``.
    """
    n = x_sorted.size
    uniq, first = np.unique(x_sorted, return_index=True)
    n_cand = uniq.size - 1
    if n_cand < 1:
        return None
    logx = np.log(x_sorted)
    tail_log_sum = np.cumsum(logx[::-1])[::-1]          # Σ_{j ≥ i} ln x_j
    lu = np.log(uniq)
    n_tail_all = n - first[:n_cand]
    denom = tail_log_sum[first[:n_cand]] - n_tail_all * lu[:n_cand]
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha_all = 1.0 + n_tail_all / denom

    def distances(cands: np.ndarray) -> np.ndarray:
        out = np.empty(cands.size)
        start = 0
        while start < cands.size:
            k0 = int(cands[start])
            cols = uniq.size - k0
            rows = max(1, min(cands.size - start, block_elems // max(cols, 1)))
            ks = cands[start:start + rows]
            cidx = np.arange(k0, uniq.size)
            act = (first[cidx][None, :] - first[ks][:, None]) / n_tail_all[ks][:, None]
            th = -np.expm1((1.0 - alpha_all[ks])[:, None] * (lu[cidx][None, :] - lu[ks][:, None]))
            diff = np.abs(th - act)
            diff[cidx[None, :] < ks[:, None]] = 0.0
            out[start:start + rows] = diff.max(axis=1)
            start += rows
        return out

    if n_cand <= max_candidates:
        cands = np.arange(n_cand)
        dist = distances(cands)
        best = int(np.argmin(dist))
        return best, uniq, first, alpha_all, dist[best], n_tail_all, n_cand
    coarse = np.unique(np.linspace(0, n_cand - 1, max_candidates).round().astype(int))
    dc = distances(coarse)
    b = int(np.argmin(dc))
    lo = coarse[max(b - 1, 0)]
    hi = coarse[min(b + 1, coarse.size - 1)]
    fine = np.arange(lo, hi + 1)
    df = distances(fine)
    bf = int(np.argmin(df))
    if df[bf] <= dc[b]:
        return int(fine[bf]), uniq, first, alpha_all, df[bf], n_tail_all, coarse.size + fine.size
    return int(coarse[b]), uniq, first, alpha_all, dc[b], n_tail_all, coarse.size + fine.size


def fit_power_law(areas, bootstrap: int = 0, seed: Optional[int] = 0,
                  max_candidates: int = 20000) -> PowerLawFit:
    """Power-law tail by maximum likelihood with x_min chosen by the KS criterion.

    For each candidate x_min (every distinct area except the largest) the continuous MLE is
    ``α = 1 + n_tail / Σ ln(A_i / x_min)`` over the ``n_tail`` areas ≥ x_min; x_min is the
    candidate minimising the KS distance between the empirical cdf of that tail and
    ``1 - (A/x_min)^(1-α)``. ``bootstrap > 0`` resamples the areas with replacement that many
    times (``seed`` for reproducibility) and repeats the whole procedure to give the standard
    deviations of x_min and α. Inventories with more than ``max_candidates`` distinct areas
    are scanned coarse-to-fine (``exhaustive`` False). Raises ``ValueError`` when there are
    fewer than two distinct areas.
    """
    a, _, _ = clean_areas(areas)
    x = np.sort(a)
    scan = _ks_scan(x, max_candidates)
    if scan is None:
        raise ValueError("the power-law fit needs at least two distinct areas")
    best, uniq, _, alpha_all, dist, n_tail_all, n_scanned = scan
    alpha = float(alpha_all[best])
    n_tail = int(n_tail_all[best])
    fit = PowerLawFit(x_min=float(uniq[best]), alpha=alpha,
                      alpha_se=(alpha - 1.0) / math.sqrt(n_tail), ks_distance=float(dist),
                      n_tail=n_tail, n=int(x.size), candidates_scanned=int(n_scanned),
                      exhaustive=uniq.size - 1 <= max_candidates)
    if bootstrap and bootstrap > 0:
        rng = np.random.default_rng(seed)
        xm, al = [], []
        for _ in range(int(bootstrap)):
            sample = np.sort(rng.choice(x, size=x.size, replace=True))
            s = _ks_scan(sample, max_candidates)
            if s is None:
                continue
            b, u, _, aa, _, _, _ = s
            if np.isfinite(aa[b]):
                xm.append(u[b])
                al.append(aa[b])
        if len(xm) >= 2:
            fit.x_min_error = float(np.std(xm, ddof=1))
            fit.alpha_error = float(np.std(al, ddof=1))
            fit.n_bootstrap = len(xm)
    return fit
