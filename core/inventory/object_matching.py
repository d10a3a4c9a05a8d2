"""Predicted and reference landslide polygons matched as objects (see core/inventory/assessment.py).

Predicted and reference polygons that overlap (positive shared area) are linked, and the
connected components of that predicted↔reference graph are the *matched groups*: one
prediction covering two mapped landslides (1:n), a landslide detected as several
fragments (n:1), or chains of both (n:m) each become one group whose summed areas are
compared, so every polygon is counted once. References overlapping no prediction are
*missed*; predictions overlapping no reference are *false alarms*. With an assessment
area, objects count when they, or a polygon of their group, overlap it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..json_values import plain
from .metrics import as_geometry_array

# Intersections smaller than this (m²) are floating-point noise along shared edges.
AREA_EPS = 1e-6

MATCHED, FALSE_ALARM, MISSED, OUTSIDE, DROPPED = "matched", "false_alarm", "missed", "outside_area", "dropped"



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
        return plain({"group": self.group, "kind": self.kind, "predicted": self.predicted,
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
        return plain(self.fields())


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
        return plain({**self.__dict__, "precision": self.precision, "recall": self.recall,
                      "f1": self.f1})


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
