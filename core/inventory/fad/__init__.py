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

from .analysis import FADResult, analyse_fad
from .chart_series import fad_chart_series, thin_fit_warnings, thin_fits
from .common import (
                     CURVE_POINTS,
                     FEW_TAIL_AREAS,
                     MIN_FIT_COUNT,
                     MLS_REFERENCE_AREA_M2,
                     MLS_REFERENCE_COUNT,
                     MLS_REFERENCE_FREQUENCY_DENSITY,
                     BinnedDensity,
                     binned_rollover,
                     clean_areas,
                     log_binned_density,
)
from .double_pareto import DPSFit, dps_cdf, dps_pdf, dps_rollover, dps_sample, fit_dps
from .inverse_gamma import InverseGammaFit, fit_inverse_gamma, inverse_gamma_pdf, inverse_gamma_rollover
from .magnitude import MLSResult, landslide_event_magnitude, mls_frequency_density
from .power_law import PowerLawFit, fit_power_law, power_law_pdf

__all__ = [
    "BinnedDensity", "PowerLawFit", "DPSFit", "InverseGammaFit", "MLSResult", "FADResult",
    "clean_areas", "log_binned_density", "binned_rollover",
    "dps_pdf", "dps_cdf", "dps_sample", "dps_rollover", "fit_dps",
    "inverse_gamma_pdf", "inverse_gamma_rollover", "fit_inverse_gamma",
    "power_law_pdf", "fit_power_law",
    "mls_frequency_density", "landslide_event_magnitude",
    "analyse_fad", "fad_chart_series",
    "MLS_REFERENCE_AREA_M2", "MLS_REFERENCE_FREQUENCY_DENSITY", "MLS_REFERENCE_COUNT",
    "FEW_TAIL_AREAS", "MIN_FIT_COUNT", "CURVE_POINTS", "thin_fits", "thin_fit_warnings",
]
