"""Did the ground change where a landslide is new? The images' evidence for each new part.

Temporal subtraction calls new whatever year T's map has and year T−1's map lacks. Two
maps by one model also differ where nothing happened on the ground: a look-alike (a bare
field, a shadow) found in one year and not the other because the light or the sensor
changed, a scar missed in T−1 and found in T, ground hidden by clouds or without data in
T−1. A landslide strips vegetation and soil, so under a real new or enlarged part the
image changed between the two years, *relative to the ground around it*. Comparing the
part with a ring of surrounding ground that neither year maps as a landslide cancels what
changes the whole scene alike (gain, haze, season, another sensor).

For each part, in each year, the contrast of the part against its ring, ln(part / ring)
per band, and how it changed from T−1 to T (each measure counts change in either
direction: a scar is brighter than forest but darker than snow, greener than bare rock
but browner than meadow; signed rules failed on the validation scenes' high mountains):

* ``brightness_change``: the mean over the bands of the change (all bands alike: light,
  shadow, wetness also move it);
* ``colour_change``: the root mean square of what is left per band (the spectral shape);
* ``ndvi_change``: the change of the NDVI contrast (part − ring), where there are R and NIR.

A part is confirmed when any measure reaches its threshold (:data:`THRESHOLDS`), *not
observed* when less than :data:`MIN_OBSERVED` of it had valid pixels in T−1 (nobody can say
when it appeared), and *unmeasured* (kept) when it has no ring of valid surrounding ground.
The thresholds were calibrated on validation scenes only (``bench/change_evidence.py``),
never on the held-out benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio.features
import rasterio.windows
import shapely

from ..geodata.bands import SPECTRAL_CHANNELS, ndvi as ndvi_of
from ..names import CONFIRMED, NO_CHANGE, NOT_OBSERVED, UNMEASURED
from ..progress import Reporter
from ..geodata.raster import YearRaster, apply_transform
from .subtraction import YearChange

KEPT = (CONFIRMED, UNMEASURED)

MEASURES = ("brightness_change", "colour_change", "ndvi_change")
THRESHOLDS = {"brightness_change": 0.3, "colour_change": 0.075}      # on the absolute value
MIN_OBSERVED = 0.5          # share of the part with valid pixels in T−1
RING_PX = 5                 # width of the ring of surrounding ground, in pixels
MIN_RING_PIXELS = 8         # fewer valid ring pixels than this: the contrast cannot be measured
DARK = 0.01                 # reflectance added before taking logs, so deep shadow does not explode


@dataclass
class Evidence:
    """Per part: the share seen in T−1, the measures (NaN when unmeasurable) and the verdict."""

    observed: np.ndarray
    measures: dict[str, np.ndarray]      # MEASURES, NaN where not measurable
    verdict: np.ndarray

    def fields(self) -> dict[str, np.ndarray]:
        return {"seen_before": np.round(self.observed, 3),
                **{k: np.round(v, 3) for k, v in self.measures.items()}, "evidence": self.verdict.astype(object)}


def common_channels(current: YearRaster, previous: YearRaster) -> list[str]:
    """The spectral channels both years' band mappings have, in the standard order."""
    a, b = current.mapping.as_dict(), previous.mapping.as_dict()
    return [c for c in SPECTRAL_CHANNELS if c in a and c in b]


PART, RING, OFF = 1, 2, 3        # burn values: the part, its ring, other landslides (not ring)


def _contrasts(raster: YearRaster, part_geom, ring_geom, near: np.ndarray, bounds,
               channels: list[str]) -> tuple[float, np.ndarray | None, float | None]:
    """(share of the part with valid pixels, per-channel ln((part+DARK)/(ring+DARK)) or
    None, NDVI contrast or None) on ``raster``'s own grid: one read, one rasterisation."""
    win = _window(raster, *bounds)
    if win is None:
        return 0.0, None, None
    shape = (int(win.height), int(win.width))
    transform = rasterio.windows.transform(win, raster.transform)
    shapes = [(ring_geom, RING), *((g, OFF) for g in near), (part_geom, PART)]     # later ones win
    burnt = rasterio.features.rasterize(shapes, out_shape=shape, transform=transform, dtype="uint8")
    part = burnt == PART
    if not part.any():              # thinner than a pixel: every pixel it touches
        part = rasterio.features.rasterize([(part_geom, PART)], out_shape=shape, transform=transform,
                                           dtype="uint8", all_touched=True) == PART
    data, valid = raster.read(win, channels)
    observed = float((part & valid).sum()) / max(int(part.sum()), 1)
    p, r = part & valid, (burnt == RING) & valid & ~part
    if not p.any() or r.sum() < MIN_RING_PIXELS:
        return observed, None, None
    logs = np.array([math.log((max(float(data[c][p].mean()), 0.0) + DARK) /
                              (max(float(data[c][r].mean()), 0.0) + DARK)) for c in channels])
    ndvi = None
    if "R" in data and "NIR" in data:
        nd = ndvi_of(data["R"], data["NIR"])
        ndvi = float(nd[p].mean() - nd[r].mean())
    return observed, logs, ndvi


def _window(raster: YearRaster, x0: float, y0: float, x1: float, y1: float):
    """The whole pixels of ``raster``'s grid covering the bounds, clipped to it; None outside."""
    inv = ~raster.transform
    cols, rows = zip(*(apply_transform(inv, x, y) for x in (x0, x1) for y in (y0, y1)))
    c0, r0 = max(0, math.floor(min(cols))), max(0, math.floor(min(rows)))
    c1, r1 = min(raster.width, math.ceil(max(cols))), min(raster.height, math.ceil(max(rows)))
    if c1 <= c0 or r1 <= r0:
        return None
    return rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)


def measure(change: YearChange, current: YearRaster, previous: YearRaster, landslides: np.ndarray,
            reporter: Reporter | None = None) -> Evidence:
    """The evidence for every part of ``change`` (year T = ``current``), with the ring kept
    off ``landslides`` (the mapped polygons of T and T−1)."""
    n = len(change)
    observed = np.zeros(n)
    values = {k: np.full(n, np.nan) for k in MEASURES}
    verdict = np.full(n, UNMEASURED, object)
    channels = common_channels(current, previous)
    ring_m = RING_PX * math.sqrt(current.pixel_area)
    parts = change.geometries
    rings = shapely.buffer(parts, ring_m, quad_segs=4)
    pad = max(abs(current.transform.a), abs(previous.transform.a))
    bounds = shapely.bounds(rings) + np.array([-pad, -pad, pad, pad])
    near_part, near_slide = shapely.STRtree(landslides).query(rings) if len(parts) else (np.empty(0, int),) * 2
    order = np.argsort(near_part, kind="stable")
    near_part, near_slide = near_part[order], near_slide[order]
    starts = np.searchsorted(near_part, np.arange(n + 1))
    with rasterio.Env():            # one GDAL environment for the many small reads below
        for i in range(n):
            if reporter is not None and i % 200 == 0:
                reporter.progress(i / max(n, 1), f"Checking the images under the new parts of {change.year}")
            near = landslides[near_slide[starts[i]:starts[i + 1]]]
            _, now, ndvi_now = _contrasts(current, parts[i], rings[i], near, bounds[i], channels)
            observed[i], before, ndvi_before = _contrasts(previous, parts[i], rings[i], near, bounds[i], channels)
            _record(i, observed[i], now, before, ndvi_now, ndvi_before, values, verdict)
    measured = ~np.isnan(values["brightness_change"])
    verdict[measured] = np.where(changed(values)[measured], CONFIRMED, NO_CHANGE)
    return Evidence(observed, values, verdict)


def _record(i, observed, now, before, ndvi_now, ndvi_before, values, verdict) -> None:
    """Part ``i``'s measures (or why there are none) from its contrasts in the two years."""
    if observed < MIN_OBSERVED:
        verdict[i] = NOT_OBSERVED
        return
    if now is None or before is None:
        return
    delta = now - before
    values["brightness_change"][i] = float(delta.mean())
    values["colour_change"][i] = float(np.sqrt(np.mean((delta - delta.mean()) ** 2)))
    if ndvi_now is not None and ndvi_before is not None:
        values["ndvi_change"][i] = ndvi_now - ndvi_before


def changed(values: dict[str, np.ndarray], thresholds: dict[str, float] = THRESHOLDS) -> np.ndarray:
    """Per part: does any measure reach its threshold (absolute values; NaN never does)?"""
    out = np.zeros(len(next(iter(values.values()))), bool)
    for name, limit in thresholds.items():
        out |= np.abs(np.nan_to_num(np.asarray(values[name], float), nan=0.0)) >= limit
    return out


def split_by_evidence(change: YearChange, evidence: Evidence) -> tuple[YearChange, YearChange]:
    """(the parts kept as new or enlarged, the parts the images do not support), each with
    the evidence fields; the kept one counts what was set aside in its summary."""
    keep = np.isin(evidence.verdict, KEPT)
    fields = evidence.fields()
    kept, dropped = change.subset(keep, fields), change.subset(~keep, fields)
    kept.unconfirmed = int((~keep).sum())
    kept.unconfirmed_area_m2 = float(dropped.areas.sum()) if len(dropped) else 0.0
    kept.not_observed = int((evidence.verdict == NOT_OBSERVED).sum())
    return kept, dropped


def confirm_changes(changes: list[YearChange], rasters: dict[int, YearRaster], landslides: dict[int, np.ndarray],
                    reporter: Reporter) -> tuple[list[YearChange], list[YearChange]]:
    """Every year's change checked against its two images: (kept, set aside) per year."""
    kept, aside = [], []
    for k, change in enumerate(changes):
        part = reporter.sub(k / max(len(changes), 1), (k + 1) / max(len(changes), 1))
        current, previous = rasters[change.year], rasters[change.previous_year]
        if not common_channels(current, previous):
            kept.append(change)
            continue
        both = np.concatenate([landslides[change.year], landslides[change.previous_year]])
        evidence = measure(change, current, previous, both, part)
        k_change, a_change = split_by_evidence(change, evidence)
        reporter.log(f"{change.year}: {len(k_change)} new or enlarged parts show a change in the images; "
                     f"{len(a_change)} set aside ({k_change.not_observed} not observed in {change.previous_year}, "
                     f"{len(a_change) - k_change.not_observed} with no change seen).")
        kept.append(k_change)
        aside.append(a_change)
    return kept, aside
