"""The landslide-event magnitude mLS (Tanyaş, Allstadt & van Westen 2018), as the USGS
reference script computes it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .common import (
    MLS_EDGE_RATIO,
    MLS_FIRST_EDGE_M2,
    MLS_N_EDGES,
    MLS_REFERENCE_AREA_M2,
    MLS_REFERENCE_COUNT,
    MLS_REFERENCE_FREQUENCY_DENSITY,
    _dataclass_dict,
    clean_areas,
)


def mls_frequency_density(areas) -> tuple[np.ndarray, np.ndarray]:
    """Frequency density on the bins of the mLS reference script.

    Lower edges ``e_k = 2 m² · 1.2^k`` (k = 0..119). The count of bin k is the number of
    areas in ``[e_k, e_{k+1})`` (the last edge holds only areas equal to it) and it is divided
    by ``e_k − e_{k−1}`` (``e_0`` for the first bin), i.e. by the width of the bin *below*;
    this keeps the convention under which the reference point of the magnitude scale was
    obtained. Returns ``(edges, frequency_density)``.
    """
    a, _, _ = clean_areas(areas)
    edges = MLS_FIRST_EDGE_M2 * MLS_EDGE_RATIO ** np.arange(MLS_N_EDGES, dtype=float)
    k = np.searchsorted(edges, a, side="right") - 1
    keep = (k >= 0) & ((k < MLS_N_EDGES - 1) | (a == edges[-1]))
    counts = np.bincount(k[keep], minlength=MLS_N_EDGES).astype(float)
    widths = np.diff(edges, prepend=0.0)
    return edges, counts / widths


@dataclass
class MLSResult:
    """Landslide-event magnitude after Tanyaş et al. (2018).

    ``mls`` is the magnitude; the inventory's medium/large landslides are described by the
    frequency density ``f(A) = constant · A^-alpha`` (m⁻²) anchored at ``anchor_area`` (the
    bin edge nearest x_min) with the frequency density ``anchor_frequency_density``.
    ``mls_error`` is the Monte-Carlo standard deviation from the x_min/α errors (None if no
    errors were given), computed with ``error_method`` and described by ``error_basis``.
    """
    mls: float
    x_min: float
    alpha: float
    constant: float
    anchor_area: float
    anchor_frequency_density: float
    midpoint_area: float
    mls_error: Optional[float] = None
    error_method: Optional[str] = None
    error_basis: Optional[str] = None
    x_min_error: Optional[float] = None
    alpha_error: Optional[float] = None
    n_draws: int = 0

    def frequency_density(self, x) -> np.ndarray:
        return self.constant * np.asarray(x, float) ** (-self.alpha)

    def to_dict(self) -> dict:
        return _dataclass_dict(self)


def _mls_value(fd_anchor, x_min, alpha):
    return (math.log10(MLS_REFERENCE_COUNT) + np.log10(fd_anchor)
            + alpha * np.log10(x_min / MLS_REFERENCE_AREA_M2)
            - math.log10(MLS_REFERENCE_FREQUENCY_DENSITY))


def landslide_event_magnitude(areas, x_min: float, alpha: float,
                              x_min_error: Optional[float] = None,
                              alpha_error: Optional[float] = None,
                              error_method: str = "consistent", draws: int = 10000,
                              seed: Optional[int] = 0) -> MLSResult:
    """Landslide-event magnitude mLS (Tanyaş, Allstadt & van Westen 2018).

    Method (as in the USGS reference implementation):

    1. Frequency densities f_k on the reference bins (:func:`mls_frequency_density`).
    2. The medium and large landslides follow ``f(A) = c·A^-α`` with the Clauset exponent α
       held fixed; the line is anchored at x_min on the frequency density of the bin whose
       lower edge is nearest to x_min: ``c = f_k · x_min^α``.
    3. The reference event (Northridge 1994, mLS = log10 11111) is represented by the line of
       the same slope through its mid-range point ``(A_ref, f_ref)``; per landslide of the
       event, ``c' = f_ref · A_ref^α / 11111``.
    4. ``mLS = log10(c / c')``: both lines are parallel in log-log space, so comparing them
       at the middle of the inventory's power-law range (√(x_min·A_max), as in the paper) or
       anywhere else gives the same number:
       ``mLS = log10 11111 + log10 f_k + α·log10(x_min/A_ref) − log10 f_ref``.

    Uncertainty (when both ``x_min_error`` and ``alpha_error`` are given), ``draws`` Monte-Carlo
    samples with ``seed``:

    * ``"consistent"`` (default): x_min ~ N(x_min, x_min_error) and α ~ N(α, alpha_error), the
      whole estimate (anchor bin included) recomputed for each draw; draws with x_min outside
      the bins or an empty anchor bin are discarded; the error is the standard deviation.
    * ``"reference"``: the procedure of the released USGS script, which reproduces the
      published ±0.08 for its sample data: the errors are treated as half-widths of uniform
      intervals (standard deviation of 500 evenly spaced values), and in each draw the
      frequency density at the inventory mid-point stays that of the nominal fit while the
      mid-point position and the slope of the reference line change with the drawn values.

    Areas must be in m². Raises ``ValueError`` for an impossible anchor (x_min ≤ 0 or no
    landslide in the anchor bin).
    """
    a, _, _ = clean_areas(areas)
    if not (x_min > 0 and math.isfinite(x_min) and math.isfinite(alpha)):
        raise ValueError("mLS needs a positive x_min and a finite exponent")
    if a.size == 0:
        raise ValueError("mLS needs at least one landslide area")
    alpha = abs(float(alpha))            # accept the exponent with either sign (β = -α)
    edges, fd = mls_frequency_density(a)
    k = int(np.argmin(np.abs(edges - x_min)))
    if fd[k] <= 0:
        raise ValueError(f"no landslide in the bin starting at {edges[k]:.0f} m² nearest x_min")
    mls = float(_mls_value(fd[k], x_min, alpha))
    a_max = float(a.max())
    result = MLSResult(mls=mls, x_min=float(x_min), alpha=alpha, constant=float(fd[k] * x_min ** alpha),
                       anchor_area=float(edges[k]), anchor_frequency_density=float(fd[k]),
                       midpoint_area=float(math.sqrt(a_max * x_min)))
    if x_min_error is None or alpha_error is None:
        return result
    x_err, a_err = abs(float(x_min_error)), abs(float(alpha_error))
    if not (math.isfinite(x_err) and math.isfinite(a_err)):
        return result
    rng = np.random.default_rng(seed)
    if error_method == "consistent":
        xs = rng.normal(x_min, x_err, draws)
        als = rng.normal(alpha, a_err, draws)
        ok = (xs > edges[0]) & (xs < edges[-1])
        kk = np.argmin(np.abs(edges[None, :] - xs[ok, None]), axis=1)
        fk = fd[kk]
        good = fk > 0
        vals = _mls_value(fk[good], xs[ok][good], als[ok][good])
        basis = "x_min and alpha drawn as normal with the given standard deviations; " \
                "mLS recomputed per draw"
    elif error_method == "reference":
        n_grid = 500
        lo_x = x_min - x_err
        if lo_x <= 0:
            lo_x = MLS_FIRST_EDGE_M2
        sd_x = float(np.std(np.linspace(lo_x, x_min + x_err, n_grid), ddof=1))
        mean_x = float(np.mean(np.linspace(lo_x, x_min + x_err, n_grid)))
        sd_a = float(np.std(np.linspace(alpha - a_err, alpha + a_err, n_grid), ddof=1))
        xs = rng.normal(mean_x, sd_x, draws)
        als = rng.normal(alpha, sd_a, draws)
        midy0 = result.constant * result.midpoint_area ** (-alpha)
        with np.errstate(invalid="ignore", divide="ignore"):
            midx = np.sqrt(a_max * xs)
            vals = (math.log10(midy0 * MLS_REFERENCE_COUNT / MLS_REFERENCE_FREQUENCY_DENSITY)
                    + als * np.log10(midx / MLS_REFERENCE_AREA_M2))
        basis = "USGS mLS.m procedure: errors as uniform half-widths, nominal mid-point " \
                "frequency density kept fixed"
    else:
        raise ValueError("error_method must be 'consistent' or 'reference'")
    vals = vals[np.isfinite(vals)]
    if vals.size >= 2:
        result.mls_error = float(np.std(vals, ddof=1))
        result.n_draws = int(vals.size)
    result.error_method = error_method
    result.error_basis = basis
    result.x_min_error = x_err
    result.alpha_error = a_err
    return result
