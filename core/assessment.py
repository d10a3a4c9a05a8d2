"""Accuracy of one year's predicted landslide polygons against reference polygons.

Three views, as a geomorphologist compares an automatic inventory with a mapped one:

* **Pixels** (the papers' precision, recall and F1, plus MCC and IoU) on a common grid:
  the year's probability raster (its nodata pixels do not count) or, without one, a grid
  of ``pixel_size`` pixels snapped to multiples of the pixel size over the inventories.
* **Objects**: predicted and reference polygons that overlap (positive shared area) are
  linked, and the connected components of that predicted↔reference graph are the
  *matched groups*. One predicted polygon covering two mapped landslides (1:n), a mapped
  landslide detected as several fragments (n:1), or chains of both (n:m) each become one
  group whose summed predicted area is compared with its summed reference area, so every
  polygon is counted once. These groups are the points of the predicted-vs-reference area
  scatter (Bhuyan et al. 2023, Fig. 10). Reference polygons overlapping no prediction are
  *missed*; predictions overlapping no reference are *false alarms*.
* **Inventories**: count, total, min, max, mean and median area of each inventory.

Both inventories must be in the same projected CRS in metres (the caller reprojects).
Invalid polygons are repaired with ``shapely.make_valid`` and only their polygonal parts
kept; geometries with no polygonal part left are reported as dropped.

With an assessment area, pixels count only when their centre is inside it, and objects
count when they, or a polygon of their matched group, overlap it. Objects are never cut
at the area's edge, so their areas stay whole landslide areas.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import rasterio
import rasterio.errors
import shapely
from rasterio.crs import CRS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import crs as crs_utils
from .errors import InputError
from .metrics import (Grid, PixelScores, as_geometry_array, grid_for_bounds, pixel_scores,
                      pixel_scores_on_grid)
from .progress import Reporter

# Intersections smaller than this (m²) are floating-point noise along shared edges.
AREA_EPS = 1e-6

MATCHED, FALSE_ALARM, MISSED, OUTSIDE, DROPPED = "matched", "false_alarm", "missed", "outside_area", "dropped"


# ---------------------------------------------------------------------------------------
# Results


def _num(v):
    """A JSON-safe Python number: NaN and infinities become None."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _json(value):
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json(v) for v in value.tolist()]
    if isinstance(value, (str, type(None))):
        return value
    if isinstance(value, (bool, int, float, np.generic)):
        return _num(value)
    return value


@dataclass
class MatchedGroup:
    """One connected set of overlapping predicted and reference polygons."""

    group: int
    predicted: list[int]      # indices into the predicted input
    reference: list[int]      # indices into the reference input
    predicted_m2: float       # summed area of the predicted polygons
    reference_m2: float       # summed area of the reference polygons
    overlap_m2: float         # area of (union of predicted) ∩ (union of reference)

    @property
    def kind(self) -> str:
        """'1:1', '1:n' (one prediction merges several references), 'n:1' (a reference
        detected as several fragments) or 'n:m'."""
        p = "1" if len(self.predicted) == 1 else "n"
        r = "1" if len(self.reference) == 1 else ("n" if p == "1" else "m")
        return f"{p}:{r}"

    @property
    def residual_m2(self) -> float:
        return self.predicted_m2 - self.reference_m2

    @property
    def relative_residual(self) -> float:
        return self.residual_m2 / self.reference_m2 if self.reference_m2 > 0 else float("nan")

    def to_dict(self) -> dict:
        return _json({"group": self.group, "kind": self.kind, "predicted": self.predicted,
                      "reference": self.reference, "predicted_m2": self.predicted_m2,
                      "reference_m2": self.reference_m2, "overlap_m2": self.overlap_m2,
                      "residual_m2": self.residual_m2, "relative_residual": self.relative_residual})


@dataclass
class ObjectTable:
    """One row per input polygon of one inventory, in input order (columns as arrays).

    ``matched_m2`` is the summed area of the polygons of the *other* inventory that this one
    overlaps directly, and ``overlap_m2`` its area inside them; ``residual_m2`` is always
    predicted − reference. These per-object figures follow the paper (each prediction gets
    the reference it intersects); for the scatter use the groups, which count every polygon
    once when fragments or merges occur.
    """

    side: str                  # "predicted" or "reference"
    area_m2: np.ndarray        # area after repair; NaN when dropped
    group: np.ndarray          # matched group, -1 when none
    n_matched: np.ndarray      # overlapping polygons of the other inventory
    matched_m2: np.ndarray
    overlap_m2: np.ndarray
    status: np.ndarray         # matched, false_alarm / missed, outside_area, dropped
    repaired: np.ndarray       # bool: was invalid and repaired

    def __len__(self) -> int:
        return len(self.area_m2)

    @property
    def residual_m2(self) -> np.ndarray:
        diff = self.area_m2 - self.matched_m2 if self.side == "predicted" else self.matched_m2 - self.area_m2
        return np.where(self.n_matched > 0, diff, np.nan)

    @property
    def relative_residual(self) -> np.ndarray:
        ref = self.matched_m2 if self.side == "predicted" else self.area_m2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((self.n_matched > 0) & (ref > 0), self.residual_m2 / ref, np.nan)

    def fields(self) -> dict[str, np.ndarray]:
        """Attribute columns (e.g. for a VectorLayer of the same polygons)."""
        return {"area_m2": self.area_m2, "group": self.group, "n_matched": self.n_matched,
                "matched_m2": self.matched_m2, "overlap_m2": self.overlap_m2,
                "residual_m2": self.residual_m2, "rel_residual": self.relative_residual,
                "status": self.status, "repaired": self.repaired}

    def to_dict(self) -> dict:
        return _json(self.fields())


@dataclass
class InventoryStats:
    count: int
    total_m2: float
    min_m2: float
    max_m2: float
    mean_m2: float
    median_m2: float

    @classmethod
    def of(cls, areas) -> "InventoryStats":
        a = np.asarray(areas, float)
        a = a[np.isfinite(a)]
        if not len(a):
            return cls(0, 0.0, *(float("nan"),) * 4)
        return cls(len(a), float(a.sum()), float(a.min()), float(a.max()), float(a.mean()),
                   float(np.median(a)))

    def to_dict(self) -> dict:
        return _json(self.__dict__)


@dataclass
class ObjectSummary:
    """Object-level counts and the agreement of matched-group areas."""

    n_predicted: int
    n_reference: int
    matched_predicted: int
    false_alarms: int
    matched_reference: int
    missed_reference: int
    n_groups: int
    groups_by_kind: dict[str, int]
    false_alarm_m2: float         # summed area of false alarms
    missed_m2: float              # summed area of missed references
    residuals: dict[str, float]   # see area_agreement()

    @property
    def precision(self) -> float:
        return self.matched_predicted / self.n_predicted if self.n_predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.matched_reference / self.n_reference if self.n_reference else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else float("nan")

    def to_dict(self) -> dict:
        return _json({**self.__dict__, "precision": self.precision, "recall": self.recall,
                      "f1": self.f1})


@dataclass
class YearAssessment:
    year: int
    pixel: PixelScores
    grid: dict                    # where the pixels were counted
    objects: ObjectSummary
    groups: list[MatchedGroup]
    predicted: ObjectTable
    reference: ObjectTable
    inventory: dict[str, InventoryStats]   # "reference" and "predicted"
    notes: list[str] = field(default_factory=list)

    def to_dict(self, per_object: bool = True) -> dict:
        """JSON-serialisable (NaN becomes null). ``per_object=False`` leaves out the
        per-polygon tables, which grow with the inventories."""
        out = {"year": int(self.year), "pixel": _json(self.pixel.to_dict()), "grid": _json(self.grid),
               "objects": self.objects.to_dict(),
               "inventory": {k: v.to_dict() for k, v in self.inventory.items()},
               "groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}
        if per_object:
            out["predicted"] = self.predicted.to_dict()
            out["reference"] = self.reference.to_dict()
        return out


# ---------------------------------------------------------------------------------------
# Geometry preparation


def repair_polygons(geoms) -> tuple[np.ndarray, np.ndarray]:
    """The polygonal part of each geometry, and which ones were invalid and repaired.

    Invalid geometries go through ``shapely.make_valid``; from collections (what
    make_valid returns when a ring collapses into lines) only the polygons are kept.
    Missing, empty and non-polygonal geometries become None.
    """
    g = as_geometry_array(geoms)
    present = ~(shapely.is_missing(g) | shapely.is_empty(g))
    invalid = present & ~shapely.is_valid(g)
    g = g.copy()
    if invalid.any():
        g[invalid] = shapely.make_valid(g[invalid])
    types = shapely.get_type_id(g)
    out = np.full(len(g), None, dtype=object)
    keep = present & np.isin(types, (3, 6)) & ~shapely.is_empty(g)
    out[keep] = g[keep]
    coll = present & (types == 7)
    if coll.any():
        parts, where = shapely.get_parts(g[coll], return_index=True)
        where = np.flatnonzero(coll)[where]
        polys, owners = [], []
        while len(parts):
            t = shapely.get_type_id(parts)
            single = (t == 3) & ~shapely.is_empty(parts)
            polys.append(parts[single])
            owners.append(where[single])
            nested = (t == 6) | (t == 7)
            parts, w = shapely.get_parts(parts[nested], return_index=True)
            where = where[nested][w]
        polys, owners = np.concatenate(polys), np.concatenate(owners)
        if len(polys):
            shapely.multipolygons(polys, indices=owners, out=out)
    return out, invalid


def _layer_parts(value):
    """Geometries and CRS WKT of a shapely array or a VectorLayer-like object."""
    if hasattr(value, "geometries"):
        return value.geometries, getattr(value, "crs_wkt", None)
    return value, None


def _parse_crs(value, what: str) -> CRS | None:
    if value is None or value == "":
        return None
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # rasterio raises CRSError; keep the message for the user
        raise InputError(f"The CRS of {what} cannot be read: {exc}") from exc


def _check_crs(crs: CRS, what: str, year) -> None:
    problem = crs_utils.metric_problem(crs)
    if problem:
        raise InputError(
            f"Accuracy assessment {year}: {what} is in {crs_utils.describe(crs)}, which is {problem}; "
            "areas in m² and pixel sizes in metres need a projected CRS in metres. "
            "Reproject the predicted and reference polygons (and the grid raster) to the same "
            "projected CRS, e.g. the local UTM zone, and run the assessment again.")


# ---------------------------------------------------------------------------------------
# Object matching


def _pair_overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return shapely.area(shapely.intersection(a, b))
    except shapely.errors.GEOSException:  # a topology failure on nearly degenerate input
        return shapely.area(shapely.intersection(a, b, grid_size=1e-3))


def _overlapping_pairs(left: np.ndarray, right: np.ndarray, min_overlap_m2: float):
    """Index pairs (i, j) with area(left[i] ∩ right[j]) > min_overlap_m2, and that area."""
    tree = shapely.STRtree(right)
    i, j = tree.query(left, predicate="intersects")
    if not len(i):
        return i, j, np.zeros(0)
    inter = _pair_overlaps(left[i], right[j])
    keep = inter > max(min_overlap_m2, AREA_EPS)
    return i[keep], j[keep], inter[keep]


def _overlaps_area(geoms: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Which geometries share some area with the area polygons (touching is not enough).
    Relate predicates only: no overlay with a possibly large, detailed area polygon."""
    i, j = shapely.STRtree(area).query(geoms, predicate="intersects")
    i = i[~shapely.touches(geoms[i], area[j])]
    out = np.zeros(len(geoms), bool)
    out[i] = True
    return out


def _union_overlap(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(shapely.area(shapely.intersection(shapely.union_all(pred), shapely.union_all(ref))))


def area_agreement(predicted_m2, reference_m2) -> dict[str, float]:
    """Agreement of matched areas: residual = predicted − reference (m²).

    mean (bias), median, quartiles, MAE and RMSE of the residuals; median relative
    residual; on log10 areas (landslide areas span orders of magnitude, as on Fig. 10's
    log axes) the mean and RMSE of log10(predicted/reference), R² about the 1:1 line
    (1 − Σ(log p − log r)² / Σ(log r − mean log r)², which can be negative) and Pearson's r.
    """
    p, r = np.asarray(predicted_m2, float), np.asarray(reference_m2, float)
    nan = float("nan")
    out = dict.fromkeys(("mean_residual_m2", "median_residual_m2", "q1_residual_m2", "q3_residual_m2",
                         "mae_m2", "rmse_m2", "median_relative_residual", "mean_log10_ratio",
                         "rmse_log10_ratio", "r2_log10_1to1", "pearson_r_log10"), nan)
    if not len(p):
        return out
    res = p - r
    q1, med, q3 = np.percentile(res, [25, 50, 75])
    out.update(mean_residual_m2=float(res.mean()), median_residual_m2=float(med), q1_residual_m2=float(q1),
               q3_residual_m2=float(q3), mae_m2=float(np.abs(res).mean()),
               rmse_m2=float(np.sqrt((res ** 2).mean())),
               median_relative_residual=float(np.median(res / r)))
    lp, lr = np.log10(p), np.log10(r)
    d = lp - lr
    out.update(mean_log10_ratio=float(d.mean()), rmse_log10_ratio=float(np.sqrt((d ** 2).mean())))
    ss_tot = float(((lr - lr.mean()) ** 2).sum())
    if len(p) >= 2 and ss_tot > 0:
        out["r2_log10_1to1"] = 1.0 - float((d ** 2).sum()) / ss_tot
        if lp.std() > 0:
            out["pearson_r_log10"] = float(np.corrcoef(lp, lr)[0, 1])
    return out


def match_objects(predicted, reference, area=None, min_overlap_m2: float = 0.0):
    """Match repaired polygon arrays (None where dropped): returns
    (groups, predicted ObjectTable, reference ObjectTable, ObjectSummary).

    Pairs overlapping by more than ``min_overlap_m2`` (touching edges never match) link a
    prediction and a reference; matched groups are the connected components of those
    links. ``area``: polygons limiting which objects count (see the module docstring).
    """
    pred, ref = as_geometry_array(predicted), as_geometry_array(reference)
    n, m = len(pred), len(ref)
    p_area = np.where(shapely.is_missing(pred), np.nan, shapely.area(pred))
    r_area = np.where(shapely.is_missing(ref), np.nan, shapely.area(ref))
    pi, ri, inter = _overlapping_pairs(pred, ref, min_overlap_m2)

    graph = coo_matrix((np.ones(len(pi)), (pi, n + ri)), shape=(n + m, n + m))
    _, labels = connected_components(graph, directed=False)

    p_in = ~shapely.is_missing(pred)
    r_in = ~shapely.is_missing(ref)
    if area is not None:  # a group counts when any of its polygons overlaps the area
        inside = np.concatenate([_overlaps_area(pred, area), _overlaps_area(ref, area)])
        label_in = np.bincount(labels, weights=inside) > 0
        p_in &= label_in[labels[:n]]
        r_in &= label_in[labels[n:]]
        keep = p_in[pi]  # both ends of a link share a label, so one end decides
        pi, ri, inter = pi[keep], ri[keep], inter[keep]

    # Number groups by their first predicted polygon, in input order.
    order = np.argsort(pi, kind="stable")
    pi, ri, inter = pi[order], ri[order], inter[order]
    uniq, first = np.unique(labels[pi], return_index=True)
    uniq = uniq[np.argsort(first)]
    renumber = np.full(len(labels), -1)
    renumber[uniq] = np.arange(len(uniq))
    node_group = renumber[labels]
    p_group, r_group = node_group[:n].copy(), node_group[n:].copy()
    p_group[~p_in] = -1
    r_group[~r_in] = -1

    def table(side, areas, group, own, other, other_area, size, inside):
        n_matched = np.bincount(own, minlength=size)
        matched_m2 = np.bincount(own, weights=other_area[other], minlength=size)
        overlap = np.minimum(np.bincount(own, weights=inter, minlength=size), np.nan_to_num(areas))
        unmatched = FALSE_ALARM if side == "predicted" else MISSED
        status = np.where(n_matched > 0, MATCHED, unmatched).astype(object)
        status[~inside] = OUTSIDE
        status[np.isnan(areas)] = DROPPED
        return ObjectTable(side, areas, group, n_matched, matched_m2, overlap, status.astype(str),
                           np.zeros(size, bool))

    p_table = table("predicted", p_area, p_group, pi, ri, r_area, n, p_in)
    r_table = table("reference", r_area, r_group, ri, pi, p_area, m, r_in)

    groups: list[MatchedGroup] = []
    n_groups = len(uniq)
    if n_groups:
        p_members = _members(p_group, n_groups)
        r_members = _members(r_group, n_groups)
        p_sum = np.bincount(p_group[p_group >= 0], weights=p_area[p_group >= 0], minlength=n_groups)
        r_sum = np.bincount(r_group[r_group >= 0], weights=r_area[r_group >= 0], minlength=n_groups)
        link_sum = np.bincount(p_group[pi], weights=inter, minlength=n_groups)
        for g in range(n_groups):
            pm, rm = p_members[g], r_members[g]
            overlap = float(link_sum[g])
            if len(pm) > 1 or len(rm) > 1:  # polygons of one inventory may overlap each other
                overlap = _union_overlap(pred[pm], ref[rm])
            groups.append(MatchedGroup(g, pm.tolist(), rm.tolist(), float(p_sum[g]), float(r_sum[g]), overlap))

    kinds: dict[str, int] = {"1:1": 0, "1:n": 0, "n:1": 0, "n:m": 0}
    for g in groups:
        kinds[g.kind] += 1
    fa = p_table.status == FALSE_ALARM
    missed = r_table.status == MISSED
    summary = ObjectSummary(
        n_predicted=int(np.count_nonzero(p_in)), n_reference=int(np.count_nonzero(r_in)),
        matched_predicted=int(np.count_nonzero(p_table.status == MATCHED)),
        false_alarms=int(np.count_nonzero(fa)),
        matched_reference=int(np.count_nonzero(r_table.status == MATCHED)),
        missed_reference=int(np.count_nonzero(missed)), n_groups=n_groups, groups_by_kind=kinds,
        false_alarm_m2=float(p_area[fa].sum()), missed_m2=float(r_area[missed].sum()),
        residuals=area_agreement([g.predicted_m2 for g in groups], [g.reference_m2 for g in groups]))
    return groups, p_table, r_table, summary


def _members(group: np.ndarray, n_groups: int) -> list[np.ndarray]:
    idx = np.flatnonzero(group >= 0)
    idx = idx[np.argsort(group[idx], kind="stable")]
    return np.split(idx, np.cumsum(np.bincount(group[idx], minlength=n_groups))[:-1])


# ---------------------------------------------------------------------------------------
# The assessment


def _positive(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _open_grid(path, polygons_crs: CRS | None, year) -> Grid:
    try:
        with rasterio.open(path) as ds:
            r_crs, grid = ds.crs, Grid(ds.transform, ds.width, ds.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"Accuracy assessment {year}: the grid raster {path} cannot be read: {exc}") from exc
    if r_crs is not None:
        _check_crs(r_crs, f"the grid raster {path}", year)
        if polygons_crs is not None and r_crs != polygons_crs:
            raise InputError(
                f"Accuracy assessment {year}: the grid raster {path} is in {crs_utils.describe(r_crs)} "
                f"but the polygons are in {crs_utils.describe(polygons_crs)}; reproject the polygons "
                "to the raster's CRS first.")
    return grid


def _present(geoms: np.ndarray) -> np.ndarray:
    return geoms[~shapely.is_missing(geoms)]


def assess_year(predicted, reference, year: int, grid_raster: str | os.PathLike | None = None,
                pixel_size: float = 3.0, area=None, reporter: Reporter | None = None, *,
                crs=None, min_overlap_m2: float = 0.0) -> YearAssessment:
    """Pixel, object and inventory accuracy of one year's ``predicted`` polygons against
    ``reference`` polygons (shapely arrays, or VectorLayers whose CRS is then checked).

    ``grid_raster``: count pixels on this raster's grid, its nodata pixels excluded;
    otherwise on a ``pixel_size`` grid (snapped to multiples of it) over the inventories,
    or over ``area`` when given. ``area``: polygon(s) limiting the assessment. ``crs``:
    the inventories' CRS when known (anything rasterio's CRS accepts); a geographic,
    Web-Mercator or non-metre CRS is refused with an InputError.
    """
    reporter = reporter or Reporter()
    reporter.progress(0.0, f"Accuracy {year}: preparing polygons")
    pred_geoms, pred_crs = _layer_parts(predicted)
    ref_geoms, ref_crs = _layer_parts(reference)
    area_in, area_crs = _layer_parts(area)
    crs_objs = {what: _parse_crs(c, what) for what, c in
                (("the polygons", crs), ("the predicted polygons", pred_crs),
                 ("the reference polygons", ref_crs), ("the assessment area", area_crs))}
    known = {w: c for w, c in crs_objs.items() if c is not None}
    for what, c in known.items():
        _check_crs(c, what, year)
    the_crs = next(iter(known.values()), None)
    if any(c != the_crs for c in known.values()):
        listed = ", ".join(f"{w}: {crs_utils.describe(c)}" for w, c in known.items())
        raise InputError(f"Accuracy assessment {year}: the polygons are in different CRSs ({listed}); "
                         "reproject them to the same projected CRS first.")
    raster_grid = None
    if grid_raster is not None:
        raster_grid = _open_grid(grid_raster, the_crs, year)
        present = _present(np.concatenate([np.asarray(pred_geoms, dtype=object), np.asarray(ref_geoms, dtype=object)]))
        if len(present):
            gx0, gy0, gx1, gy1 = raster_grid.bounds
            px0, py0, px1, py1 = shapely.total_bounds(present)
            if not (gx0 < px1 and px0 < gx1 and gy0 < py1 and py0 < gy1):
                raise InputError(f"Accuracy assessment {year}: the grid raster {grid_raster} does not overlap the "
                                 "year's inventories, so no pixel could be scored; give the image these "
                                 "inventories were mapped on (or no grid raster).")
    elif not _positive(pixel_size):
        raise InputError(f"Accuracy assessment {year}: the pixel size must be a positive number "
                         f"of metres, not {pixel_size!r}.")

    pred, pred_fixed = repair_polygons(pred_geoms)
    ref, ref_fixed = repair_polygons(ref_geoms)
    notes: list[str] = []
    area_geoms = None
    if area is not None:
        area_geoms, area_fixed = repair_polygons(area_in)
        area_geoms = _present(area_geoms)
        if area_fixed.any():
            notes.append(f"{int(area_fixed.sum())} invalid assessment-area polygon(s) repaired.")
        if not len(area_geoms):
            raise InputError(f"Accuracy assessment {year}: the assessment area has no polygon "
                             "(it is empty or not polygonal).")
    for what, fixed, geoms in (("predicted", pred_fixed, pred), ("reference", ref_fixed, ref)):
        if fixed.any():
            notes.append(f"{int(fixed.sum())} invalid {what} polygon(s) repaired with make_valid.")
        dropped = int(np.count_nonzero(shapely.is_missing(geoms)))
        if dropped:
            notes.append(f"{dropped} {what} geometr{'y' if dropped == 1 else 'ies'} without area "
                         "(missing, empty or not polygonal) ignored.")

    reporter.progress(0.02, f"Accuracy {year}: matching objects")
    groups, p_table, r_table, summary = match_objects(pred, ref, area_geoms, min_overlap_m2)
    p_table.repaired, r_table.repaired = pred_fixed, ref_fixed
    inventory = {"reference": InventoryStats.of(r_table.area_m2[r_table.status != OUTSIDE]),
                 "predicted": InventoryStats.of(p_table.area_m2[p_table.status != OUTSIDE])}

    pix = reporter.sub(0.1, 1.0)
    pred_p, ref_p = _present(pred), _present(ref)
    if raster_grid is not None:
        grid = raster_grid
        scores = pixel_scores(grid_raster, pred_p, ref_p, area=area_geoms, reporter=pix)
        grid_info = {"source": "raster", "raster": str(grid_raster)}
    else:
        extent = area_geoms if area_geoms is not None else np.concatenate([pred_p, ref_p])
        grid = grid_for_bounds(shapely.total_bounds(extent) if len(extent) else (0, 0, 0, 0), pixel_size)
        if not len(extent):
            notes.append("Both inventories are empty: no pixel was counted.")
        scores = pixel_scores_on_grid(grid, pred_p, ref_p, area=area_geoms, reporter=pix)
        grid_info = {"source": "area" if area_geoms is not None else "extent"}
    grid_info.update(pixel_size=[abs(grid.transform.a), abs(grid.transform.e)], width=grid.width,
                     height=grid.height, bounds=list(grid.bounds), assessment_area=area_geoms is not None,
                     counted_pixels=scores.total,
                     crs=crs_utils.describe(the_crs) if the_crs is not None else None)
    return YearAssessment(int(year), scores, grid_info, summary, groups, p_table, r_table, inventory, notes)


def scatter_chart_data(assessments) -> dict:
    """Predicted-vs-reference area scatter (one point per matched group) for the charts.

    Besides the three parallel lists, each year carries ``overlap_m2`` (the predicted area
    inside the reference, per group) and, unpaired, the areas of missed references and of
    false alarms.
    """
    pairs = []
    for a in sorted(assessments, key=lambda a: a.year):
        pairs.append({"year": int(a.year),
                      "reference_m2": [g.reference_m2 for g in a.groups],
                      "predicted_m2": [g.predicted_m2 for g in a.groups],
                      "residual_m2": [g.residual_m2 for g in a.groups],
                      "overlap_m2": [g.overlap_m2 for g in a.groups],
                      "missed_reference_m2": a.reference.area_m2[a.reference.status == MISSED].tolist(),
                      "false_alarm_m2": a.predicted.area_m2[a.predicted.status == FALSE_ALARM].tolist()})
    return {"kind": "area_scatter", "title": "Predicted vs reference landslide area", "pairs": _json(pairs)}
