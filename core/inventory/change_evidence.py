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
observed* when less than :data:`MIN_OBSERVED` of it had valid pixels in T−1 or when cloud
(or snow) covered its ring in T−1 and is gone from the ring in T (nobody can say when it
appeared), and *unmeasured* (kept) when it has no ring of valid surrounding ground.

Cloud-like pixels are found with the tests of Fmask (Zhu & Woodcock 2012) that need only
blue, green, red and NIR: the haze-optimised transform B − 0.5 R − 0.08 > 0, whiteness
(Σ|band − mean| / mean over B, G, R) < 0.7 and NDVI < 0.8. Bright rock and snow pass them
too; requiring the cover to be gone from the ring in T keeps a part whose surroundings
are as white in both years (scree, a snowfield with new debris on it), and requiring the
ring to have been at least twice as bright in T−1 keeps one seen through a haze (which
the haze test flags by design). The ring, not the part, is tested: the part is what changed.
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
COVERED = 0.5               # share of the ring cloud-like: covered in that year
OPAQUE = 2.0                # ... and the ring at least this much brighter in T−1 than in T (not haze)
HOT_OFFSET = 0.08           # Fmask's haze-optimised transform: B − 0.5 R − HOT_OFFSET > 0
WHITENESS_MAX = 0.7         # Fmask: Σ|band − mean| / mean over B, G, R below this
NDVI_MAX = 0.8              # Fmask's basic test: vegetation is not cloud
RING_PX = 5                 # width of the ring of surrounding ground, in pixels
MIN_RING_PIXELS = 8         # fewer valid ring pixels than this: the contrast cannot be measured
DARK = 0.01                 # reflectance added before taking logs, so deep shadow does not explode


@dataclass
class Evidence:
    """Per part: the share seen in T−1, the measures (NaN when unmeasurable), the share of
    its ring that is cloud-like in T−1 and in T (NaN without B, G and R) and the verdict."""

    observed: np.ndarray
    measures: dict[str, np.ndarray]      # MEASURES, NaN where not measurable
    verdict: np.ndarray
    cover: dict[str, np.ndarray]         # COVER_FIELDS, NaN where not testable

    @property
    def covered(self) -> np.ndarray:
        """Per part: was its ring under an opaque cover in T−1 that is gone in T?"""
        return covered_then(*(self.cover[k] for k in COVER_FIELDS))

    def fields(self) -> dict[str, np.ndarray]:
        return {"seen_before": np.round(self.observed, 3), **{k: np.round(v, 3) for k, v in self.cover.items()},
                **{k: np.round(v, 3) for k, v in self.measures.items()}, "evidence": self.verdict.astype(object)}


COVER_FIELDS = ("cover_before", "cover_now", "ring_dimming")


def common_channels(current: YearRaster, previous: YearRaster) -> list[str]:
    """The spectral channels both years' band mappings have, in the standard order."""
    a, b = current.mapping.as_dict(), previous.mapping.as_dict()
    return [c for c in SPECTRAL_CHANNELS if c in a and c in b]


PART, RING, OFF = 1, 2, 3        # burn values: the part, its ring, other landslides (not ring)


def whiteness(b: np.ndarray, g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Fmask's whiteness: Σ|band − mean| / mean over B, G, R (low: grey, white; NaN where dark)."""
    mean = (b + g + r) / 3
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.abs(b - mean) + np.abs(g - mean) + np.abs(r - mean)) / mean


def cloud_like(data: dict[str, np.ndarray]) -> np.ndarray | None:
    """Pixels that pass Fmask's cloud tests needing only B, G, R (and NIR when there is
    one): bright, flat in the visible, blue-rich, not vegetated. None without B, G, R."""
    if not {"B", "G", "R"} <= data.keys():
        return None
    b, g, r = (np.asarray(data[c], np.float32) for c in ("B", "G", "R"))
    out = (b - 0.5 * r - HOT_OFFSET > 0) & (whiteness(b, g, r) < WHITENESS_MAX)
    if "NIR" in data:
        out &= ndvi_of(data["R"], data["NIR"]) < NDVI_MAX
    return out


@dataclass
class _Side:
    """One year's view of a part, on that year's own grid."""

    observed: float                      # share of the part with valid pixels
    logs: np.ndarray | None = None       # per channel ln((part + DARK) / (ring + DARK))
    ndvi: float | None = None            # NDVI contrast, part − ring
    cover: float = np.nan                # share of the ring's valid pixels that are cloud-like
    ring_visible: float = np.nan         # mean B, G, R reflectance of the ring


def _contrasts(raster: YearRaster, part_geom, ring_geom, near: np.ndarray, bounds,
               channels: list[str]) -> _Side:
    """The part against its ring on ``raster``'s own grid: one read, one rasterisation."""
    win = _window(raster, *bounds)
    if win is None:
        return _Side(0.0)
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
    side = _Side(observed)
    cloudy = cloud_like(data)       # on the ring: the part itself is what changed
    if cloudy is not None and r.any():
        side.cover = float(cloudy[r].mean())
        side.ring_visible = float(np.mean([data[c][r].mean() for c in ("B", "G", "R")]))
    if not p.any() or r.sum() < MIN_RING_PIXELS:
        return side
    logs = np.array([math.log((max(float(data[c][p].mean()), 0.0) + DARK) /
                              (max(float(data[c][r].mean()), 0.0) + DARK)) for c in channels])
    ndvi = None
    if "R" in data and "NIR" in data:
        nd = ndvi_of(data["R"], data["NIR"])
        ndvi = float(nd[p].mean() - nd[r].mean())
    side.logs, side.ndvi = logs, ndvi
    return side


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
    cover = {k: np.full(n, np.nan) for k in COVER_FIELDS}
    visible_before, visible_now = np.full(n, np.nan), np.full(n, np.nan)     # the rings' B, G, R means
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
            now = _contrasts(current, parts[i], rings[i], near, bounds[i], channels)
            before = _contrasts(previous, parts[i], rings[i], near, bounds[i], channels)
            observed[i] = before.observed
            cover["cover_before"][i], cover["cover_now"][i] = before.cover, now.cover
            visible_before[i], visible_now[i] = before.ring_visible, now.ring_visible
            if observed[i] >= MIN_OBSERVED:
                _record(i, now, before, values)
    with np.errstate(divide="ignore", invalid="ignore"):
        cover["ring_dimming"] = visible_before / visible_now
    measured = ~np.isnan(values["brightness_change"])
    verdict[measured] = np.where(changed(values)[measured], CONFIRMED, NO_CHANGE)
    evidence = Evidence(observed, values, verdict, cover)
    # measured or not, a part nobody saw in T−1 is not dated; its measures stay, for a check by eye
    verdict[(observed < MIN_OBSERVED) | evidence.covered] = NOT_OBSERVED
    return evidence


def covered_then(cover_before, cover_now, ring_dimming):
    """Was the part's ring under an opaque cover (cloud, snow) in T−1 that is gone in T:
    cloud-like then, not now, and at least :data:`OPAQUE` times as bright then (a haze,
    which the tests also flag, leaves the ground visible and hardly brightens it)?
    Arrays or numbers; NaN (not testable) never is."""
    before, now = np.asarray(cover_before, float), np.asarray(cover_now, float)
    dimming = np.nan_to_num(np.asarray(ring_dimming, float), nan=0.0, posinf=0.0)
    return (np.nan_to_num(before, nan=0.0) >= COVERED) & (np.nan_to_num(now, nan=1.0) < COVERED) & \
        (dimming >= OPAQUE)


def _record(i, now: _Side, before: _Side, values) -> None:
    """Part ``i``'s measures from its contrasts in the two years (none without both)."""
    if now.logs is None or before.logs is None:
        return
    delta = now.logs - before.logs
    values["brightness_change"][i] = float(delta.mean())
    values["colour_change"][i] = float(np.sqrt(np.mean((delta - delta.mean()) ** 2)))
    if now.ndvi is not None and before.ndvi is not None:
        values["ndvi_change"][i] = now.ndvi - before.ndvi


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
        covered = int(evidence.covered.sum())
        reporter.log(f"{change.year}: {len(k_change)} new or enlarged parts show a change in the images; "
                     f"{len(a_change)} set aside ({k_change.not_observed} not observed in {change.previous_year}"
                     + (f", {covered} of them under cloud or snow then" if covered else "")
                     + f", {len(a_change) - k_change.not_observed} with no change seen).")
        kept.append(k_change)
        aside.append(a_change)
    return kept, aside
