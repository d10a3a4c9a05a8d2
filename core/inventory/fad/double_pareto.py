"""The Double Pareto Simplified distribution (Stark & Guzzetti 2009; the form of Rossi et al.
2012): pdf, cdf, sampling, rollover and its maximum-likelihood fit."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import optimize

from .common import _dataclass_dict, binned_rollover, clean_areas, log_binned_density


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
