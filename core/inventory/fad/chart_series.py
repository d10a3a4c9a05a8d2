"""A FAD result as the JSON-friendly chart data of one year, and the warnings about fits on
too few tail areas."""
from __future__ import annotations

import numpy as np

from ...json_values import plain
from .analysis import FADResult
from .common import CURVE_POINTS, FEW_TAIL_AREAS, _finite_or_none


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
