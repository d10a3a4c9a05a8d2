"""What the FAD estimators share: the constants, cleaning the areas, and logarithmically
binned densities (counts, frequency and probability density) with their rollover."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from ...json_values import plain

# Reference point of the mLS scale, from the USGS implementation of Tanyaş et al. (2018): the
# frequency density (m⁻²) at the middle of the power-law range of the 1994 Northridge
# inventory, whose magnitude is defined as log10(11111) (Malamud et al. 2004).
MLS_REFERENCE_AREA_M2 = 4.876599623713225e4
MLS_REFERENCE_FREQUENCY_DENSITY = 8.364725347860417e-4
MLS_REFERENCE_COUNT = 11111
# The logarithmic bins of the reference script: lower edges 2 m² · 1.2^k, k = 0..119.
MLS_FIRST_EDGE_M2 = 2.0
MLS_EDGE_RATIO = 1.2
MLS_N_EDGES = 120

MIN_FIT_COUNT = 10          # fewer valid areas than this: no fit is attempted
# A power-law exponent estimated from fewer tail areas than this is rough: its standard error
# (α−1)/√n_tail exceeds 0.14 for α = 2, and the x_min scan itself becomes unstable
# (Clauset et al. 2009 advise against trusting fits below about 50 tail points).
FEW_TAIL_AREAS = 50
CURVE_POINTS = 200          # points per fitted curve in the chart data


def _dataclass_dict(obj) -> dict:
    return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}


def _finite_or_none(v) -> Optional[float]:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def clean_areas(areas) -> tuple[np.ndarray, int, int]:
    """Return ``(valid areas as float64, number of non-finite values, number of values ≤ 0)``.

    Anything that cannot be turned into a float array counts as non-finite."""
    try:
        a = np.asarray(areas, dtype=float).ravel()
    except (TypeError, ValueError):
        a = np.array([_to_float(v) for v in np.asarray(areas, dtype=object).ravel()], dtype=float)
    finite = np.isfinite(a)
    positive = finite & (a > 0)
    return a[positive], int((~finite).sum()), int((finite & ~positive).sum())


def _to_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class BinnedDensity:
    """Histogram of areas on logarithmic bins.

    ``edges`` has one more value than the per-bin arrays. ``centers`` are geometric bin
    centres. ``density`` is the probability density p(A) = count/(N·width) and
    ``frequency_density`` is count/width, both per m². ``nonempty`` flags bins with a count.
    """
    edges: np.ndarray
    centers: np.ndarray
    widths: np.ndarray
    counts: np.ndarray
    frequency_density: np.ndarray
    density: np.ndarray
    nonempty: np.ndarray
    n: int
    bins_per_decade: float

    def to_dict(self) -> dict:
        return _dataclass_dict(self)


def log_binned_density(areas, bins_per_decade: float = 10, edges=None) -> BinnedDensity:
    """Non-cumulative densities of ``areas`` on logarithmic bins.

    Bin edges are powers ``10^(k/bins_per_decade)`` covering the smallest to the largest area
    (so bins of different inventories line up), unless ``edges`` are given. Each bin is
    ``[lo, hi)`` except the last, which also holds its upper edge. Non-positive and
    non-finite areas are ignored; an empty input gives empty arrays.
    """
    a, _, _ = clean_areas(areas)
    n = a.size
    if edges is not None:
        e = np.asarray(edges, dtype=float)
    elif n == 0:
        e = np.empty(0)
    else:
        if bins_per_decade <= 0:
            raise ValueError("bins_per_decade must be positive")
        lo = math.floor(math.log10(a.min()) * bins_per_decade + 1e-9)
        hi = math.ceil(math.log10(a.max()) * bins_per_decade - 1e-9)
        if hi <= lo:
            hi = lo + 1
        e = 10.0 ** (np.arange(lo, hi + 1) / bins_per_decade)
        # float rounding must not push the extremes out of the outer bins
        e[0] = min(e[0], a.min())
        e[-1] = max(e[-1], a.max())
    if e.size < 2:
        z = np.empty(0)
        return BinnedDensity(e, z, z, np.empty(0, int), z, z, np.empty(0, bool), n,
                             float(bins_per_decade))
    counts, _ = np.histogram(a, bins=e)
    widths = np.diff(e)
    freq = counts / widths
    dens = freq / n if n else np.zeros_like(freq)
    return BinnedDensity(edges=e, centers=np.sqrt(e[:-1]) * np.sqrt(e[1:]), widths=widths,
                         counts=counts.astype(int), frequency_density=freq, density=dens,
                         nonempty=counts > 0, n=n, bins_per_decade=float(bins_per_decade))


def binned_rollover(binned: BinnedDensity, min_count: int = 5) -> Optional[float]:
    """Centre of the bin of highest probability density, or None when the bins show no
    rollover.

    Only bins holding at least ``min_count`` areas take part (a lone sliver in a narrow bin
    has a huge but meaningless density). The peak counts as a rollover only if a bin below
    it, other than the lowest of those bins, has a lower density: the lowest populated bin
    is usually cut by the smallest mapped area, so its density is biased low and a drop there
    alone is an artefact of the bin edges, not a rollover.
    """
    if binned.counts.size == 0:
        return None
    ok = binned.counts >= max(int(min_count), 1)
    if ok.sum() < 3:
        return None
    dens = np.where(ok, binned.density, -np.inf)
    k = int(np.argmax(dens))
    idx = np.arange(binned.counts.size)
    lowest = int(np.argmax(ok))
    lower = ok & (idx < k) & (idx != lowest) & (binned.density < binned.density[k])
    return float(binned.centers[k]) if lower.any() else None
