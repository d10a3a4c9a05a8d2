"""Frequency-area distribution (FAD) statistics of a landslide inventory.

Everything works on a plain array of landslide areas in m² (one value per polygon) and uses
only numpy and scipy; nothing here imports QGIS or Qt.

What is computed
----------------
* **Binned densities** on logarithmic bins: counts, frequency density ``f = count / width``
  (m⁻²) and probability density ``p(A) = count / (N · width)`` (m⁻², integrates to 1 over
  the bins). Empty bins are kept in the arrays and flagged, so plots can leave them out.
* **Double Pareto Simplified (DPS) pdf** (Stark & Guzzetti 2009; the form used by Rossi et al.
  2012), fitted by maximum likelihood::

      p(A) = (β/t) · (A/t)^-(α+1) · [1 + (A/t)^-α]^-(1+β/α) / S(m)

  with ``S(m) = 1 - [1 + (m/t)^-α]^(-β/α)`` the probability above the lower truncation ``m``
  (``S = 1`` for ``m = 0``, the untruncated form, which is a Burr type III/Dagum
  distribution whose cdf is ``[1 + (A/t)^-α]^(-β/α)``). For ``A >> t`` the density decays as
  ``A^-(α+1)``: **the tail exponent comparable to Clauset's α is α_DPS + 1**. For ``A << t``
  it grows as ``A^(β-1)``. The maximum (rollover) is at ``t·((β-1)/(α+1))^(1/α)`` when
  ``β > 1``; for ``β ≤ 1`` the density only decreases.
* **Inverse-gamma pdf** (Malamud et al. 2004), fitted by maximum likelihood::

      p(A) = 1/(a·Γ(ρ)) · [a/(A-s)]^(ρ+1) · exp(-a/(A-s)),   A > s

  Tail exponent ``ρ + 1``; rollover (mode) at ``s + a/(ρ+1)``.
* **Power-law tail** ``p(A) = (α-1)/x_min · (A/x_min)^-α`` for ``A ≥ x_min``: continuous
  maximum-likelihood α for every candidate x_min, x_min chosen where the Kolmogorov-Smirnov
  distance between the tail and its fit is smallest (Clauset, Shalizi & Newman 2009). The
  scan is vectorised with numpy and gives the same x_min and α as ``powerlaw.Fit(areas,
  discrete=False)``; optional bootstrap (resampling with replacement and repeating the whole
  scan) for the uncertainty of x_min and α.
* **Landslide-event magnitude mLS** (Tanyaş, Allstadt & van Westen 2018), computed the way
  the USGS reference script does (see :func:`landslide_event_magnitude`).

:func:`analyse_fad` does all of it and never raises on bad input: a fit that cannot be done
is ``None`` and the reason is in ``FADResult.skipped``. :func:`fad_chart_series` turns a result
into the JSON-friendly chart data of one year.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np
from scipy import optimize, special

from .json_values import plain

__all__ = [
    "BinnedDensity", "PowerLawFit", "DPSFit", "InverseGammaFit", "MLSResult", "FADResult",
    "clean_areas", "log_binned_density", "binned_rollover",
    "dps_pdf", "dps_cdf", "dps_sample", "dps_rollover", "fit_dps",
    "inverse_gamma_pdf", "inverse_gamma_rollover", "fit_inverse_gamma",
    "power_law_pdf", "fit_power_law",
    "mls_frequency_density", "landslide_event_magnitude",
    "analyse_fad", "fad_chart_series",
    "MLS_REFERENCE_AREA_M2", "MLS_REFERENCE_FREQUENCY_DENSITY", "MLS_REFERENCE_COUNT",
]

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


# --------------------------------------------------------------------------------------------
# helpers

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


# --------------------------------------------------------------------------------------------
# binned densities

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


# --------------------------------------------------------------------------------------------
# Double Pareto Simplified

def _dps_log_survival_m(alpha, beta, t, m):
    """log S(m) = log(1 - [1 + (m/t)^-α]^(-β/α)); 0 for m = 0."""
    if m is None or m <= 0:
        return 0.0
    sp = np.logaddexp(0.0, -alpha * (math.log(m) - math.log(t)))
    return float(np.log(-np.expm1(-(beta / alpha) * sp)))


def _dps_logpdf(x, alpha, beta, t, m=0.0):
    x = np.asarray(x, dtype=float)
    z = np.log(x) - math.log(t)
    sp = np.logaddexp(0.0, -alpha * z)
    out = (math.log(beta) - math.log(t) - (alpha + 1.0) * z - (1.0 + beta / alpha) * sp
           - _dps_log_survival_m(alpha, beta, t, m))
    if m and m > 0:
        out = np.where(x >= m, out, -np.inf)
    return out


def dps_pdf(x, alpha: float, beta: float, t: float, m: float = 0.0) -> np.ndarray:
    """Double Pareto Simplified probability density (per m²) at areas ``x``.

    ``p(A) = (β/t)(A/t)^-(α+1)[1 + (A/t)^-α]^-(1+β/α) / S(m)``, truncated below at ``m``
    (``m = 0``: untruncated). Density ~ A^-(α+1) for large A (tail exponent α+1) and
    ~ A^(β-1) for small A.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.exp(_dps_logpdf(np.maximum(np.asarray(x, float), 1e-300), alpha, beta, t, m))


def dps_cdf(x, alpha: float, beta: float, t: float, m: float = 0.0) -> np.ndarray:
    """Cumulative distribution of the (truncated) DPS: ``(F(x) - F(m)) / (1 - F(m))`` with
    ``F(x) = [1 + (x/t)^-α]^(-β/α)``."""
    x = np.maximum(np.asarray(x, dtype=float), 1e-300)

    def big_f(v):
        return np.exp(-(beta / alpha) * np.logaddexp(0.0, -alpha * (np.log(v) - math.log(t))))

    if not m or m <= 0:
        return big_f(x)
    fm = big_f(np.float64(m))
    return np.clip((big_f(x) - fm) / (1.0 - fm), 0.0, 1.0)


def dps_sample(n: int, alpha: float, beta: float, t: float, m: float = 0.0,
               rng=None) -> np.ndarray:
    """Draw ``n`` areas from the (truncated) DPS by inverting its cdf:
    ``A = t·(u^(-α/β) - 1)^(-1/α)`` with ``u`` uniform on ``(F(m), 1)``."""
    rng = np.random.default_rng(rng)
    fm = float(dps_cdf(m, alpha, beta, t)) if m and m > 0 else 0.0
    u = fm + (1.0 - fm) * rng.random(n)
    u = np.clip(u, 1e-300, np.nextafter(1.0, 0.0))
    # u^(-α/β) - 1 computed as expm1 for accuracy near u = 1 (the large-area tail)
    inner = np.expm1(-(alpha / beta) * np.log(u))
    return t * inner ** (-1.0 / alpha)


def dps_rollover(alpha: float, beta: float, t: float, m: float = 0.0) -> Optional[float]:
    """Area of maximum DPS density: ``t·((β-1)/(α+1))^(1/α)`` for ``β > 1`` (and above the
    truncation ``m``); None when the density only decreases over its support."""
    if not (beta > 1.0):
        return None
    r = t * ((beta - 1.0) / (alpha + 1.0)) ** (1.0 / alpha)
    if m and r <= m:
        return None
    return float(r)


@dataclass
class DPSFit:
    """Maximum-likelihood Double Pareto Simplified fit (Stark & Guzzetti 2009).

    Density ``p(A) = (β/t)(A/t)^-(α+1)[1+(A/t)^-α]^-(1+β/α) / S(m)``. ``alpha`` controls the
    large-area power law, whose density exponent is ``tail_exponent = alpha + 1`` (the number
    comparable to the Clauset α); ``beta`` the small-area side (density ~ A^(β-1)); ``t``
    (m²) sets the rollover position. ``m`` is the fixed lower truncation (m²; 0 = none).
    ``*_se`` are asymptotic standard errors from the observed information (None when the
    Hessian is not positive definite). ``bounds_hit`` names parameters that ended on the
    search bounds (α, β in [0.02, 20] and [0.02, 50]): typically ``beta`` at its lower bound
    when the inventory shows no rollover above ``m`` (β is then unconstrained), or ``t`` at
    its lower bound when the data above ``m`` are a pure power law.
    """
    alpha: float
    beta: float
    t: float
    m: float
    tail_exponent: float
    rollover: Optional[float]
    log_likelihood: float
    n: int
    alpha_se: Optional[float] = None
    beta_se: Optional[float] = None
    t_se: Optional[float] = None
    converged: bool = True
    bounds_hit: list = field(default_factory=list)

    def pdf(self, x) -> np.ndarray:
        return dps_pdf(x, self.alpha, self.beta, self.t, self.m)

    def to_dict(self) -> dict:
        d = _dataclass_dict(self)
        d["form"] = "p(A)=(beta/t)(A/t)^-(alpha+1)[1+(A/t)^-alpha]^-(1+beta/alpha)/S(m); " \
                    "tail exponent = alpha+1"
        return d


def _numerical_hessian(fun, x, step=1e-4):
    x = np.asarray(x, float)
    k = x.size
    h = np.empty((k, k))
    f0 = fun(x)
    for i in range(k):
        for j in range(i, k):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i] = step
            ej[j] = step
            if i == j:
                val = (fun(x + ei) - 2 * f0 + fun(x - ei)) / step ** 2
            else:
                val = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej)
                       + fun(x - ei - ej)) / (4 * step ** 2)
            h[i, j] = h[j, i] = val
    return h


def _log_param_se(nll, theta, values):
    """Standard errors of ``values = exp(theta)`` by the delta method from the Hessian of the
    negative log-likelihood in log parameters; None entries where it is not usable."""
    try:
        hess = _numerical_hessian(nll, theta)
        if not np.all(np.isfinite(hess)):
            return [None] * len(values)
        cov = np.linalg.inv(hess)
        var = np.diag(cov)
        if np.any(var <= 0) or np.any(np.linalg.eigvalsh(hess) <= 0):
            return [None] * len(values)
        return [float(v * math.sqrt(s)) for v, s in zip(values, var)]
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return [None] * len(values)


def _best_minimum(nll, starts, bounds):
    """Minimise from several starts (L-BFGS-B inside bounds, then Nelder-Mead polish)."""
    best = None
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, float), [b[0] for b in bounds], [b[1] for b in bounds])
        try:
            res = optimize.minimize(nll, x0, method="L-BFGS-B", bounds=bounds)
        except (ValueError, FloatingPointError):
            continue
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
    if best is None or not np.isfinite(best.fun):
        return None
    polish = optimize.minimize(nll, best.x, method="Nelder-Mead", bounds=bounds,
                               options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    if np.isfinite(polish.fun) and polish.fun <= best.fun:
        polish.success = bool(polish.success or best.success)
        return polish
    return best


def fit_dps(areas, m="min", alpha0: Optional[float] = None) -> DPSFit:
    """Maximum-likelihood fit of the Double Pareto Simplified pdf.

    ``m`` is the lower truncation: ``"min"`` (default) conditions on the smallest area (the
    mapping/detection limit of an inventory), ``0`` uses the untruncated published form, a
    number uses that area. The likelihood is maximised over ``(ln α, ln β, ln t)`` with areas
    rescaled by their geometric mean, from several starts. ``alpha0`` (e.g. the Clauset α − 1)
    is an extra starting value. Raises ``ValueError`` if the data cannot support a fit.
    """
    a, _, _ = clean_areas(areas)
    if a.size < 3 or np.ptp(a) <= 0:
        raise ValueError("the DPS fit needs at least 3 areas that are not all equal")
    if isinstance(m, str):
        if m != "min":
            raise ValueError("m must be 'min', 0 or an area")
        m_val = float(a.min())
    else:
        m_val = float(m or 0.0)
        a = a[a >= m_val]
        if a.size < 3 or np.ptp(a) <= 0:
            raise ValueError("fewer than 3 distinct areas above the truncation m")
    # work in units of the geometric mean so that ln t is O(1)
    scale = float(np.exp(np.mean(np.log(a))))
    x = a / scale
    lx = np.log(x)
    ms = m_val / scale
    lms = math.log(ms) if ms > 0 else None

    def nll(theta):
        la, lb, lt = theta
        al, be = math.exp(la), math.exp(lb)
        z = lx - lt
        sp = np.logaddexp(0.0, -al * z)
        ll = lb - lt - (al + 1.0) * z - (1.0 + be / al) * sp
        total = float(ll.sum())
        if lms is not None:
            spm = float(np.logaddexp(0.0, -al * (lms - lt)))
            surv = -math.expm1(-(be / al) * spm)
            if not surv > 0:
                return 1e300
            total -= x.size * math.log(surv)
        return -total if math.isfinite(total) else 1e300

    lx_lo, lx_hi = float(lx.min()), float(lx.max())
    span = max(lx_hi - lx_lo, 1.0)
    bounds = [(math.log(0.02), math.log(20.0)), (math.log(0.02), math.log(50.0)),
              (lx_lo - 2 * span, lx_hi + span)]
    binned = log_binned_density(a, bins_per_decade=5)
    roll = binned_rollover(binned)
    t_guesses = [float(np.median(lx)), float(np.quantile(lx, 0.25))]
    if roll is not None:
        t_guesses.append(math.log(roll / scale))
    alpha_guesses = [1.4]
    if alpha0 is not None and np.isfinite(alpha0) and alpha0 > 0.05:
        alpha_guesses.append(float(alpha0))
    starts = [(math.log(al), math.log(be), lt) for lt in t_guesses for al in alpha_guesses
              for be in (1.5, 4.0)]
    res = _best_minimum(nll, starts, bounds)
    if res is None:
        raise ValueError("the DPS likelihood could not be maximised")
    la, lb, lt = res.x
    alpha, beta, t = math.exp(la), math.exp(lb), math.exp(lt) * scale
    if not (math.isfinite(t) and t > 0):
        raise ValueError("the DPS likelihood has no usable maximum for these areas")
    se = _log_param_se(nll, res.x, [alpha, beta, t])
    hits = [f"{name} at its {side} bound"
            for name, v, bb in zip(("alpha", "beta", "t"), res.x, bounds)
            for side, b in zip(("lower", "upper"), bb) if abs(v - b) < 1e-3]
    return DPSFit(alpha=alpha, beta=beta, t=t, m=m_val, tail_exponent=alpha + 1.0,
                  rollover=dps_rollover(alpha, beta, t, m_val),
                  log_likelihood=float(-res.fun - a.size * math.log(scale)), n=int(a.size),
                  alpha_se=se[0], beta_se=se[1], t_se=se[2],
                  converged=bool(res.success) and not hits, bounds_hit=hits)


# --------------------------------------------------------------------------------------------
# inverse gamma

def inverse_gamma_pdf(x, rho: float, a: float, s: float) -> np.ndarray:
    """Inverse-gamma density (Malamud et al. 2004), per m²:
    ``p(A) = 1/(a Γ(ρ)) [a/(A-s)]^(ρ+1) exp(-a/(A-s))`` for ``A > s``, else 0."""
    x = np.asarray(x, dtype=float)
    d = x - s
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logp = (rho * math.log(a) - special.gammaln(rho) - (rho + 1.0) * np.log(d) - a / d)
        return np.where(d > 0, np.exp(logp), 0.0)


def inverse_gamma_rollover(rho: float, a: float, s: float) -> float:
    """Mode of the inverse-gamma pdf: ``s + a/(ρ+1)``."""
    return float(s + a / (rho + 1.0))


@dataclass
class InverseGammaFit:
    """Maximum-likelihood three-parameter inverse-gamma fit (Malamud et al. 2004).

    ``rho`` (ρ, dimensionless), ``a`` (m², scale) and ``s`` (m², location; may be negative).
    The density decays as ``A^-(ρ+1)`` for large areas: ``tail_exponent = rho + 1``.
    """
    rho: float
    a: float
    s: float
    tail_exponent: float
    rollover: float
    log_likelihood: float
    n: int
    rho_se: Optional[float] = None
    a_se: Optional[float] = None
    s_se: Optional[float] = None
    converged: bool = True

    def pdf(self, x) -> np.ndarray:
        return inverse_gamma_pdf(x, self.rho, self.a, self.s)

    def to_dict(self) -> dict:
        d = _dataclass_dict(self)
        d["form"] = "p(A)=1/(a Gamma(rho)) [a/(A-s)]^(rho+1) exp(-a/(A-s)); tail exponent = rho+1"
        return d


def _gamma_shape_mle(c):
    """Solve ``ln ρ - ψ(ρ) = c`` (c > 0) for ρ, vectorised (gamma-shape MLE equation)."""
    c = np.asarray(c, float)
    # Minka's closed-form start, then Newton steps on ln ρ (monotone, converges in a few)
    rho = (3.0 - c + np.sqrt((c - 3.0) ** 2 + 24.0 * c)) / (12.0 * c)
    for _ in range(30):
        g = np.log(rho) - special.digamma(rho) - c
        dg = 1.0 / rho - special.polygamma(1, rho)
        step = g / (dg * rho)          # Newton on u = ln ρ: dg/du = ρ·dg/dρ
        rho = rho * np.exp(-np.clip(step, -2.0, 2.0))
        if np.all(np.abs(step) < 1e-12):
            break
    return rho


def _ig_profile(x, d):
    """Profile log-likelihood of the inverse gamma with ``s = min(x) - d`` for each ``d``;
    returns ``(loglik, rho, a)`` arrays. Uses ``1/(A - s) ~ Gamma(ρ, rate a)``."""
    d = np.atleast_1d(np.asarray(d, float))
    s = x.min() - d
    y = 1.0 / (x[None, :] - s[:, None])
    mean_y = y.mean(axis=1)
    mean_log_y = np.log(y).mean(axis=1)
    c = np.maximum(np.log(mean_y) - mean_log_y, 1e-12)
    rho = _gamma_shape_mle(c)
    a = rho / mean_y
    n = x.size
    ll = n * (rho * np.log(a) - special.gammaln(rho)) + (rho + 1.0) * n * mean_log_y - a * n * mean_y
    return ll, rho, a


def fit_inverse_gamma(areas) -> InverseGammaFit:
    """Maximum-likelihood fit of the three-parameter inverse gamma (ρ, a, s).

    The location s is profiled out on a logarithmic grid of ``min(A) - s`` (for a given s
    the data ``1/(A-s)`` are gamma distributed and ρ, a have a one-equation MLE), the best
    grid value is refined with a bounded scalar search, and all three parameters are then
    polished together in ``(ln ρ, ln a, ln(min A - s))``. Raises ``ValueError`` when the data
    cannot support a fit.
    """
    a_, _, _ = clean_areas(areas)
    if a_.size < 3 or np.ptp(a_) <= 0:
        raise ValueError("the inverse-gamma fit needs at least 3 areas that are not all equal")
    scale = float(np.median(a_))
    x = a_ / scale
    xmin = float(x.min())
    # d = min(A) - s from tiny (s just below the smallest area) to far below it
    lo = math.log(max(xmin, 1e-9) * 1e-6)
    hi = math.log(max(np.quantile(x, 0.9), xmin) * 20.0)
    grid = np.linspace(lo, hi, 121)
    ll, _, _ = _ig_profile(x, np.exp(grid))
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    k = int(np.argmax(ll))
    left, right = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    if right > left:
        r = optimize.minimize_scalar(lambda ld: -float(_ig_profile(x, math.exp(ld))[0][0]),
                                     bounds=(left, right), method="bounded",
                                     options={"xatol": 1e-8})
        ld0 = float(r.x)
    else:
        ld0 = float(grid[k])
    _, rho0, a0 = _ig_profile(x, math.exp(ld0))

    def nll(theta):
        lr, la, ld = theta
        rho, a, d = math.exp(lr), math.exp(la), math.exp(ld)
        z = x - (xmin - d)
        val = x.size * (rho * la - special.gammaln(rho)) - (rho + 1.0) * np.log(z).sum() \
            - a * (1.0 / z).sum()
        return -float(val) if np.isfinite(val) else 1e300

    theta0 = np.array([math.log(rho0[0]), math.log(a0[0]), ld0])
    res = optimize.minimize(nll, theta0, method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    theta = res.x if (np.isfinite(res.fun) and res.fun <= nll(theta0)) else theta0
    rho, a_s, d = (math.exp(v) for v in theta)
    a_m2 = a_s * scale
    s_m2 = (xmin - d) * scale
    if not (all(math.isfinite(v) and v > 0 for v in (rho, a_m2)) and math.isfinite(s_m2)):
        raise ValueError("the inverse-gamma likelihood has no usable maximum for these areas")
    se = _log_param_se(nll, theta, [rho, a_m2, d * scale])
    at_edge = abs(theta[2] - lo) < 1e-3 or abs(theta[2] - hi) < 1e-3
    return InverseGammaFit(rho=rho, a=a_m2, s=s_m2, tail_exponent=rho + 1.0,
                           rollover=inverse_gamma_rollover(rho, a_m2, s_m2),
                           log_likelihood=float(-nll(theta) - x.size * math.log(scale)),
                           n=int(x.size), rho_se=se[0], a_se=se[1], s_se=se[2],
                           converged=bool(res.success) and not at_edge)


# --------------------------------------------------------------------------------------------
# power-law tail (Clauset et al. 2009)

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


# --------------------------------------------------------------------------------------------
# landslide-event magnitude (Tanyaş et al. 2018)

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


# --------------------------------------------------------------------------------------------
# everything together

@dataclass
class FADResult:
    """All FAD statistics of one inventory.

    ``n_input`` values were given, ``n`` valid (finite, > 0) areas were used;
    ``n_dropped = n_nonfinite + n_nonpositive``. ``binned`` is always present; each fit
    (``power_law``, ``dps``, ``inverse_gamma``, ``mls``) is None when it could not be done,
    with the reason in ``skipped[name]``. ``rollover`` holds the area of maximum probability
    density from the binned data and from each fitted pdf (None where there is none).
    """
    n_input: int
    n: int
    n_dropped: int
    n_nonfinite: int
    n_nonpositive: int
    summary: dict
    binned: BinnedDensity
    power_law: Optional[PowerLawFit] = None
    dps: Optional[DPSFit] = None
    inverse_gamma: Optional[InverseGammaFit] = None
    mls: Optional[MLSResult] = None
    rollover: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def rollover_m2(self) -> Optional[float]:
        """The rollover to report. The DPS fit decides when it exists (None then means that
        the fitted density only decreases above the smallest area: no rollover resolved);
        without a DPS fit, the inverse-gamma mode, else the binned estimate."""
        if self.dps is not None:
            return self.rollover.get("dps")
        if self.inverse_gamma is not None:
            return self.rollover.get("inverse_gamma")
        return self.rollover.get("binned")

    def to_dict(self) -> dict:
        d = _dataclass_dict(self)
        d["rollover_m2"] = plain(self.rollover_m2)
        return d


def _summary(a: np.ndarray) -> dict:
    if a.size == 0:
        return {"count": 0, "total_m2": 0.0, "mean_m2": None, "median_m2": None,
                "min_m2": None, "max_m2": None}
    return {"count": int(a.size), "total_m2": float(a.sum()), "mean_m2": float(a.mean()),
            "median_m2": float(np.median(a)), "min_m2": float(a.min()), "max_m2": float(a.max())}


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)


def analyse_fad(areas, *, bins_per_decade: float = 10, min_count: int = MIN_FIT_COUNT,
                power_law: bool = True, dps: bool = True, inverse_gamma: bool = True,
                mls: bool = True, dps_truncation="min", bootstrap: int = 0,
                seed: Optional[int] = 0, x_min_error: Optional[float] = None,
                alpha_error: Optional[float] = None, mls_error_method: str = "consistent",
                mls_draws: int = 10000, max_candidates: int = 20000) -> FADResult:
    """Binned densities, DPS, inverse-gamma and power-law fits, rollovers and mLS of one
    inventory of areas (m²). Never raises for bad data: non-finite and non-positive areas are
    dropped and counted, and fits that cannot be done are None with a reason in ``skipped``.

    ``bootstrap`` > 0 adds bootstrap errors of x_min and α (seeded with ``seed``) that are then
    used for the mLS uncertainty. ``x_min_error``/``alpha_error`` override those errors (e.g.
    published values). Without either, the mLS uncertainty uses the asymptotic standard error
    of α only (x_min taken as exact), and ``mls.error_basis`` says so.
    """
    if areas is None:
        areas = []
    elif not hasattr(areas, "__len__") and not np.isscalar(areas):
        areas = list(areas)                     # a generator or other one-shot iterable
    try:
        n_input = int(np.size(np.asarray(areas, dtype=object)))
    except Exception:  # noqa: BLE001 - anything odd is just counted as zero input
        n_input = 0
    a, n_nonfinite, n_nonpositive = clean_areas(areas if n_input else [])
    result = FADResult(n_input=n_input, n=int(a.size), n_dropped=n_nonfinite + n_nonpositive,
                       n_nonfinite=n_nonfinite, n_nonpositive=n_nonpositive,
                       summary=_summary(a), binned=log_binned_density(a, bins_per_decade))
    if result.n_dropped:
        result.notes.append(f"dropped {result.n_dropped} area(s): {n_nonfinite} not finite, "
                            f"{n_nonpositive} zero or negative")
    result.rollover["binned"] = binned_rollover(result.binned)

    too_few = None
    if a.size < max(int(min_count), 3):
        too_few = f"only {a.size} valid area(s); at least {max(int(min_count), 3)} are needed"
    elif np.ptp(a) <= 0:
        too_few = "all areas are equal"

    def attempt(name, enabled, fn):
        if not enabled:
            result.skipped[name] = "not requested"
            return None
        if too_few:
            result.skipped[name] = too_few
            return None
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return fn()
        except Exception as exc:  # noqa: BLE001 - one failed fit must not stop the analysis
            result.skipped[name] = _reason(exc)
            return None

    result.power_law = attempt("power_law", power_law,
                               lambda: fit_power_law(a, bootstrap=bootstrap, seed=seed,
                                                     max_candidates=max_candidates))
    alpha0 = result.power_law.alpha - 1.0 if result.power_law else None
    result.dps = attempt("dps", dps, lambda: fit_dps(a, m=dps_truncation, alpha0=alpha0))
    result.inverse_gamma = attempt("inverse_gamma", inverse_gamma, lambda: fit_inverse_gamma(a))
    result.rollover["dps"] = result.dps.rollover if result.dps else None
    result.rollover["inverse_gamma"] = result.inverse_gamma.rollover if result.inverse_gamma else None
    if result.dps is not None and result.dps.bounds_hit:
        result.notes.append("DPS fit: " + ", ".join(result.dps.bounds_hit)
                            + " (parameter not constrained by the data)")
    elif result.dps is not None and not result.dps.converged:
        result.notes.append("DPS fit: the optimiser did not report convergence")
    if result.inverse_gamma is not None and not result.inverse_gamma.converged:
        result.notes.append("inverse-gamma fit: location at the edge of its search range "
                            "or no reported convergence")

    if not mls:
        result.skipped["mls"] = "not requested"
    elif result.power_law is None:
        result.skipped["mls"] = "no power-law fit: " + result.skipped.get("power_law", "")
    else:
        pl = result.power_law
        xe, ae = x_min_error, alpha_error
        basis = None
        if xe is None and pl.x_min_error is not None:
            xe = pl.x_min_error
        if ae is None and pl.alpha_error is not None:
            ae = pl.alpha_error
        if xe is None and ae is None:
            xe, ae = 0.0, pl.alpha_se
            basis = "asymptotic standard error of alpha only; x_min error unknown " \
                    "(use bootstrap > 0)"
        elif xe is None or ae is None:
            xe = 0.0 if xe is None else xe
            ae = pl.alpha_se if ae is None else ae
        method = mls_error_method
        mres = attempt("mls", True, lambda: landslide_event_magnitude(
            a, pl.x_min, pl.alpha, x_min_error=xe, alpha_error=ae, error_method=method,
            draws=mls_draws, seed=seed))
        if mres is not None and basis is not None:
            mres.error_basis = basis + "; " + (mres.error_basis or "")
        result.mls = mres
    return result


# --------------------------------------------------------------------------------------------
# chart data

def _fmt_area(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _curve_x(lo: float, hi: float) -> np.ndarray:
    if not (lo > 0 and hi > lo):
        return np.empty(0)
    return np.geomspace(lo, hi, CURVE_POINTS)


def fad_chart_series(result: FADResult, label) -> dict:
    """Chart data of one inventory (one year) in a JSON-friendly dict.

    Keys: ``label``, ``n``, ``bin_centers`` and ``density`` (non-empty bins only, p(A) per m²),
    ``fits`` (a list of ``{"name", "label", "x", "y"}`` curves in m² and p(A) for the fits
    that exist: ``power_law`` scaled by n_tail/n so it is comparable with the binned p(A) of
    the whole inventory, ``dps`` and ``inverse_gamma``), ``rollover_m2``, ``x_min_m2``,
    ``alpha`` and ``mls`` (None when not available).
    """
    b = result.binned
    keep = b.nonempty if b.counts.size else np.zeros(0, bool)
    lo = result.summary.get("min_m2")
    hi = result.summary.get("max_m2")
    fits = []
    pl = result.power_law

    def add(name, make):
        try:
            with np.errstate(all="ignore"):
                text, x, y = make()
            x, y = np.asarray(x, float), np.asarray(y, float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                fits.append({"name": name, "label": text, "x": plain(x[ok]), "y": plain(y[ok])})
        except (ValueError, ArithmeticError, TypeError):
            pass                              # a curve that cannot be drawn is left out

    if hi is not None and pl is not None:
        def power_curve():
            x = _curve_x(pl.x_min, hi)
            return (f"power law α={pl.alpha:.2f}, x_min={_fmt_area(pl.x_min)} m²", x,
                    pl.pdf(x) * (pl.n_tail / pl.n))
        add("power_law", power_curve)
    if hi is not None and result.dps is not None:
        d = result.dps

        def dps_curve():
            x = _curve_x(max(d.m, lo) if d.m else lo, hi)
            return (f"DPS α={d.alpha:.2f}, β={d.beta:.2f}, t={_fmt_area(d.t)} m² "
                    f"(tail exponent {d.tail_exponent:.2f})", x, d.pdf(x))
        add("dps", dps_curve)
    if hi is not None and result.inverse_gamma is not None:
        g = result.inverse_gamma

        def ig_curve():
            x = _curve_x(lo, hi)
            s_text = _fmt_area(g.s) if g.s >= 0 else "-" + _fmt_area(-g.s)
            return (f"inverse gamma ρ={g.rho:.2f}, a={_fmt_area(g.a)} m², s={s_text} m²", x,
                    g.pdf(x))
        add("inverse_gamma", ig_curve)
    return {
        "label": str(label),
        "n": int(result.n),
        "bin_centers": plain(b.centers[keep]) if b.counts.size else [],
        "density": plain(b.density[keep]) if b.counts.size else [],
        "fits": fits,
        "rollover_m2": _finite_or_none(result.rollover_m2),
        "x_min_m2": _finite_or_none(pl.x_min) if pl else None,
        "alpha": _finite_or_none(pl.alpha) if pl else None,
        "n_tail": int(pl.n_tail) if pl else None,
        "mls": _finite_or_none(result.mls.mls) if result.mls else None,
    }


def thin_fits(rows: list[dict]) -> list[tuple]:
    """(year, "" or "new_", α, tail polygons) of every power-law fit in statistics rows
    (``alpha``/``n_tail``, ``new_alpha``/``new_n_tail``) that rests on fewer than
    FEW_TAIL_AREAS polygons."""
    out = []
    for prefix in ("", "new_"):
        for row in rows:
            n_tail, alpha = row.get(f"{prefix}n_tail"), row.get(f"{prefix}alpha")
            if alpha is not None and n_tail is not None and n_tail < FEW_TAIL_AREAS:
                out.append((row.get("year"), prefix, float(alpha), int(n_tail)))
    return out


def thin_fit_warnings(rows: list[dict]) -> list[str]:
    """One sentence per fit of :func:`thin_fits`."""
    what = {"": "landslides", "new_": "new and enlarged landslides"}
    return [f"{year}: the power law of the {what[prefix]} (α = {alpha:.2f}) rests on only {n} polygons "
            f"above x_min (fewer than {FEW_TAIL_AREAS}); treat α as rough."
            for year, prefix, alpha, n in thin_fits(rows)]
