"""Everything together: :func:`analyse_fad` runs every estimator on an inventory's areas and
never raises on bad input (a fit that cannot be done is None, its reason in ``skipped``)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...json_values import plain
from .common import MIN_FIT_COUNT, BinnedDensity, _dataclass_dict, binned_rollover, clean_areas, log_binned_density
from .double_pareto import DPSFit, fit_dps
from .inverse_gamma import InverseGammaFit, fit_inverse_gamma
from .magnitude import MLSResult, landslide_event_magnitude
from .power_law import PowerLawFit, fit_power_law


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
