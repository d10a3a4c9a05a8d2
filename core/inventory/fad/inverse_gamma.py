"""The inverse-gamma distribution of landslide areas (Malamud et al. 2004): pdf, rollover and
its maximum-likelihood fit."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import optimize, special

from .common import _dataclass_dict, clean_areas
from .double_pareto import _log_param_se


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
