"""Per-year inventory statistics and the trend through the years (the paper's Fig. 4).

Areas always come from the geometry (real inventories carry area attributes that
disagree with it), and the density is per km² of the area that was actually mapped:
the valid pixels of the image when the inventory comes from our mapping, otherwise an
extent the user gives, otherwise the bounding box of the whole series (said so in the
output, because a bounding box overstates the mapped area).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class YearStatistics:
    year: int
    count: int
    total_area_m2: float
    mean_area_m2: float | None
    median_area_m2: float | None
    min_area_m2: float | None
    max_area_m2: float | None
    mapped_area_km2: float | None
    density_per_km2: float | None          # landslides per km² mapped
    areal_density_pct: float | None        # landslide area as % of the mapped area
    extent_source: str = "unknown"         # what mapped_area_km2 is: "valid pixels", "given", ...
    new: int | None = None                 # new / enlarged parts from the subtraction
    enlarged: int | None = None
    new_area_m2: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def year_statistics(year: int, areas: np.ndarray, mapped_area_km2: float | None = None,
                    extent_source: str = "unknown") -> YearStatistics:
    areas = np.asarray(areas, dtype=float)
    areas = areas[np.isfinite(areas)]
    n = len(areas)
    some = n > 0
    mapped = mapped_area_km2 if mapped_area_km2 and mapped_area_km2 > 0 else None
    return YearStatistics(
        year=int(year), count=n, total_area_m2=_r(areas.sum()),
        mean_area_m2=_r(areas.mean()) if some else None,
        median_area_m2=_r(np.median(areas)) if some else None,
        min_area_m2=_r(areas.min()) if some else None,
        max_area_m2=_r(areas.max()) if some else None,
        mapped_area_km2=_r(mapped, 4) if mapped else None,
        density_per_km2=_r(n / mapped, 4) if mapped else None,
        areal_density_pct=_r(100.0 * areas.sum() / (mapped * 1e6), 4) if mapped else None,
        extent_source=extent_source if mapped else "none",
    )


def add_changes(stats: YearStatistics, change_summary: dict) -> None:
    """Attach the subtraction's new/enlarged counts (see ``YearChange.summary``)."""
    stats.new = int(change_summary["new"])
    stats.enlarged = int(change_summary["enlarged"])
    stats.new_area_m2 = _r(change_summary["new_area_m2"] + change_summary["enlarged_area_m2"])


def bounding_box_km2(bounds: np.ndarray) -> float:
    """Area of the union bounding box of ``[xmin, ymin, xmax, ymax]`` rows, in km²."""
    b = np.asarray(bounds, dtype=float).reshape(-1, 4)
    b = b[np.isfinite(b).all(axis=1)]
    if not len(b):
        return 0.0
    return float((b[:, 2].max() - b[:, 0].min()) * (b[:, 3].max() - b[:, 1].min()) / 1e6)


def trend_chart_data(stats: list[YearStatistics], title: str = "Landslides through the years") -> dict:
    """The trend chart's data (see charts.draw_trend): mapped, and new or enlarged when known."""
    years = [s.year for s in stats]
    series = [{"label": "mapped", "count": [s.count for s in stats],
               "area_m2": [s.total_area_m2 for s in stats]}]
    if any(s.new is not None for s in stats):
        series.append({
            "label": "new or enlarged",
            "count": [None if s.new is None else s.new + (s.enlarged or 0) for s in stats],
            "area_m2": [s.new_area_m2 for s in stats]})
    return {"kind": "trend", "title": title, "years": years, "series": series}


def statistics_csv(stats: list[YearStatistics], extra: dict[int, dict] | None = None) -> str:
    """One row per year; ``extra`` adds columns per year (e.g. the FAD exponents)."""
    return rows_csv([{**s.to_dict(), **(extra or {}).get(s.year, {})} for s in stats])


def rows_csv(rows: list[dict]) -> str:
    """CSV of dict rows (columns in order of first appearance; None and NaN left empty)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return out.getvalue()


def _csv_value(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value
