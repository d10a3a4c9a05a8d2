"""Temporal subtraction: what is new or enlarged in year T compared with year T−1.

A model maps every landslide visible in an image, old scars included, so the landslides
of year T are E_T = P_T − P_{T−1}. Two delineations of the same scar never coincide
exactly, and their difference leaves thin slivers along old outlines; a morphological
opening (a negative then a positive buffer) removes strips narrower than twice the
buffer, and remnants below a minimum area are dropped.

Everything is vectorised over shapely 2 arrays: one STRtree query pairs every polygon of
T with the polygons of T−1 it intersects, and the differences run in rounds (round k
subtracts the k-th neighbour of every polygon at once), so no Python loop runs over
polygons. Polygons of T that touch nothing of T−1 are kept exactly as mapped.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import shapely

from .series import YearInventory, clean_polygons
from ..progress import Reporter
from ..geodata.vector_io import VectorLayer

NEW, ENLARGED = "new", "enlarged"


@dataclass
class SubtractionSettings:
    """Sliver buffer and minimum remnant area, in metres; see :meth:`for_pixel_size`."""

    sliver_buffer_m: float = 3.0
    min_remnant_m2: float = 81.0
    quad_segs: int = 4

    @classmethod
    def for_pixel_size(cls, pixel_size_m: float, sliver_px: float = 1.0,
                       min_remnant_px: float = 9.0) -> "SubtractionSettings":
        """Defaults tied to the source imagery: a one-pixel buffer (strips narrower than two
        pixels are slivers) and nine pixels, the smallest object a model can detect (~3×3 px)."""
        return cls(sliver_buffer_m=sliver_px * pixel_size_m,
                   min_remnant_m2=min_remnant_px * pixel_size_m ** 2)

    def to_dict(self) -> dict:
        return {"sliver_buffer_m": self.sliver_buffer_m, "min_remnant_m2": self.min_remnant_m2}


@dataclass
class YearChange:
    """The new and enlarged parts of one year, with what the subtraction removed."""

    year: int
    previous_year: int | None
    geometries: np.ndarray            # Polygons
    change: np.ndarray                # "new" | "enlarged"
    parent_fid: np.ndarray            # FID of the T−1 polygon an enlarged part grew from; -1 for new
    source_fid: np.ndarray            # FID of the polygon of year T the part comes from
    polygons: int = 0                 # polygons of year T
    previous_polygons: int = 0        # polygons of year T−1
    untouched: int = 0                # polygons of T that touch nothing of T−1 (kept whole)
    sliver_area_m2: float = 0.0       # area removed as slivers by the buffer opening
    small_remnants: int = 0           # parts dropped below the minimum remnant area
    small_remnant_area_m2: float = 0.0
    fields: dict[str, np.ndarray] = field(default_factory=dict)   # carried from year T
    unconfirmed: int = 0              # parts set aside because the images show no change there
    unconfirmed_area_m2: float = 0.0
    not_observed: int = 0             # of those, parts without valid pixels in T−1

    def subset(self, keep: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> "YearChange":
        """The parts where ``keep`` holds (counts of the inputs unchanged), with ``extra``
        per-part fields added."""
        fields = {**self.fields, **(extra or {})}
        return replace(self, geometries=self.geometries[keep], change=self.change[keep],
                       parent_fid=self.parent_fid[keep], source_fid=self.source_fid[keep],
                       fields={k: np.asarray(v)[keep] for k, v in fields.items()})

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def areas(self) -> np.ndarray:
        return shapely.area(self.geometries) if len(self.geometries) else np.empty(0)

    def summary(self) -> dict:
        areas = self.areas
        new = self.change == NEW
        return {
            "year": self.year, "previous_year": self.previous_year,
            "polygons": self.polygons, "previous_polygons": self.previous_polygons,
            "parts": len(self), "new": int(new.sum()), "enlarged": int((~new).sum()),
            "new_area_m2": round(float(areas[new].sum()), 2),
            "enlarged_area_m2": round(float(areas[~new].sum()), 2),
            "untouched_polygons": self.untouched,
            "sliver_area_removed_m2": round(self.sliver_area_m2, 2),
            "small_remnants_removed": self.small_remnants,
            "small_remnant_area_removed_m2": round(self.small_remnant_area_m2, 2),
            "unconfirmed_parts": self.unconfirmed,
            "unconfirmed_area_m2": round(self.unconfirmed_area_m2, 2),
            "not_observed_parts": self.not_observed,
        }

    def to_layer(self, crs_wkt: str | None) -> VectorLayer:
        n = len(self)
        fields = {
            "year": np.full(n, self.year, np.int64),
            "prev_year": np.full(n, -1 if self.previous_year is None else self.previous_year, np.int64),
            "change": self.change.astype(object),
            "parent_fid": self.parent_fid.astype(np.int64),
            "source_fid": self.source_fid.astype(np.int64),
            "area_m2": np.round(self.areas, 2),
            "perimeter_m": np.round(shapely.length(self.geometries), 2) if n else np.empty(0),
            **self.fields,
        }
        return VectorLayer(self.geometries, fields, crs_wkt)


def _group_ranks(keys: np.ndarray) -> np.ndarray:
    """For sorted ``keys``, the position of each element within its run of equal keys."""
    if not len(keys):
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(keys)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    return np.arange(len(keys)) - first


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return shapely.difference(a, b)
    except shapely.errors.GEOSException:
        # a topology error in one pair must not stop the year: snap-rounded overlay
        # (OverlayNG on a 1 mm grid) is robust where floating-point overlay fails
        return shapely.difference(a, b, grid_size=1e-3)


def _polygon_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygonal parts of each geometry (overlay results may hold lines and points)."""
    parts, index, _ = clean_polygons(geoms)
    return parts, index


def _remove_slivers(diff: np.ndarray, idx: np.ndarray, settings: SubtractionSettings) -> np.ndarray:
    """The parts of ``diff[idx]`` that survive an opening of the year's whole difference.

    The opening (−d then +d buffer) is done on each difference united with the
    differences within 2·d of it, so that a thin strip next to a neighbouring polygon
    of the same year still counts as part of the wide area they form together. Then
    each difference keeps what lies within d of the opened shape: the corners the
    opening rounds off come back, the slivers do not.
    """
    d, q = settings.sliver_buffer_m, settings.quad_segs
    own = diff[idx]
    local = own.copy()
    tree = shapely.STRtree(diff)
    a, b = tree.query(own, predicate="dwithin", distance=2 * d)
    other = b != idx[a]
    a, b = a[other], b[other]
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    ranks = _group_ranks(a)
    for r in range(int(ranks.max()) + 1 if len(ranks) else 0):
        sel = ranks == r
        local[a[sel]] = shapely.union(local[a[sel]], diff[b[sel]])
    opened = shapely.buffer(shapely.buffer(local, -d, quad_segs=q), d, quad_segs=q)
    return shapely.intersection(own, shapely.buffer(opened, d, quad_segs=q))


def subtract_pair(current: YearInventory, previous: YearInventory | None,
                  settings: SubtractionSettings) -> YearChange:
    """E_T = P_T − P_{T−1} with slivers and small remnants removed, each part tagged."""
    cur = current.geometries
    carried = dict(current.fields)
    empty = YearChange(current.year, previous.year if previous is not None else None, np.empty(0, object),
                       np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64),
                       polygons=len(cur), previous_polygons=len(previous) if previous is not None else 0,
                       fields={k: v[:0] for k, v in carried.items()})
    if not len(cur):
        return empty
    prev = previous.geometries if previous is not None else np.empty(0, object)
    tree = shapely.STRtree(prev)
    ci, pj = tree.query(cur, predicate="intersects") if len(prev) else (np.empty(0, int),) * 2
    order = np.lexsort((pj, ci))
    ci, pj = ci[order], pj[order]

    touched = np.zeros(len(cur), bool)
    touched[ci] = True
    diff = cur.copy()
    ranks = _group_ranks(ci)
    for r in range(int(ranks.max()) + 1 if len(ranks) else 0):
        sel = ranks == r
        diff[ci[sel]] = _difference(diff[ci[sel]], prev[pj[sel]])

    idx = np.flatnonzero(touched)
    kept = _remove_slivers(diff, idx, settings) if settings.sliver_buffer_m > 0 else diff[idx]
    raw_area = shapely.area(diff[idx])
    sliver_area = float(np.sum(raw_area) - np.sum(shapely.area(kept)))

    geoms = np.concatenate([cur[~touched], kept])
    source = np.concatenate([np.flatnonzero(~touched), idx])
    parts, where = _polygon_parts(geoms)
    source = source[where]
    areas = shapely.area(parts)
    small = areas < settings.min_remnant_m2
    out = YearChange(
        current.year, previous.year if previous is not None else None, parts[~small],
        np.where(touched[source[~small]], ENLARGED, NEW).astype(object),
        np.full(int((~small).sum()), -1, np.int64), current.source_fid[source[~small]],
        polygons=len(cur), previous_polygons=len(prev), untouched=int((~touched).sum()),
        sliver_area_m2=max(sliver_area, 0.0), small_remnants=int(small.sum()),
        small_remnant_area_m2=float(areas[small].sum()),
        fields={k: v[source[~small]] for k, v in carried.items()})
    source = source[~small]
    order = np.argsort(source, kind="stable")   # parts in the order of their source polygons
    out = out.subset(order)
    source = source[order]
    _assign_parents(out, source, ci, pj, previous, settings.sliver_buffer_m)
    return out


def _assign_parents(out: YearChange, source: np.ndarray, ci: np.ndarray, pj: np.ndarray,
                    previous: YearInventory | None, d: float) -> None:
    """Each enlarged part's parent: among the T−1 polygons its source polygon intersects,
    the one sharing the longest border with the part (nearest first when none touches)."""
    enlarged = np.flatnonzero(out.change == ENLARGED)
    if not len(enlarged) or previous is None:
        return
    counts = np.bincount(ci, minlength=int(source.max()) + 1)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    src = source[enlarged]
    n_cand = counts[src]
    part_of = np.repeat(np.arange(len(enlarged)), n_cand)
    offset = np.arange(int(n_cand.sum())) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand)
    cand = pj[np.repeat(starts[src], n_cand) + offset]
    parts = out.geometries[enlarged][part_of]
    prev = previous.geometries[cand]
    dist = shapely.distance(parts, prev)
    band = shapely.buffer(parts, max(d, 1e-3), quad_segs=2)
    shared = shapely.area(shapely.intersection(band, prev))
    best = np.lexsort((dist, -shared, part_of))     # per part: most shared, then nearest
    first = np.r_[True, np.diff(part_of[best]) != 0]
    out.parent_fid[enlarged[part_of[best][first]]] = previous.source_fid[cand[best][first]]


def subtract_series(series: list[YearInventory], settings: SubtractionSettings,
                    reporter: Reporter | None = None) -> list[YearChange]:
    """Every year against the previous year present in the series (gaps are bridged:
    with 2015 missing, 2016 is compared with 2014). The first year has no T−1 and gets
    no change layer."""
    reporter = reporter or Reporter()
    series = sorted(series, key=lambda s: s.year)
    changes = []
    for i in range(1, len(series)):
        reporter.progress((i - 1) / max(1, len(series) - 1),
                          f"Subtracting {series[i - 1].year} from {series[i].year}")
        change = subtract_pair(series[i], series[i - 1], settings)
        s = change.summary()
        reporter.log(f"{series[i].year} − {series[i - 1].year}: {s['new']} new and {s['enlarged']} "
                     f"enlarged parts ({s['new_area_m2'] + s['enlarged_area_m2']:,.0f} m²); "
                     f"{s['sliver_area_removed_m2']:,.0f} m² of slivers and "
                     f"{s['small_remnants_removed']} remnants < {settings.min_remnant_m2:g} m² removed.")
        changes.append(change)
    reporter.progress(1.0, "Subtraction done")
    return changes
