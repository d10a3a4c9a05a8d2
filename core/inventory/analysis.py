"""The inventory jobs: temporal subtraction (``subtract``), statistics and frequency-area
distributions (``analyse``), and the analysis step the mapping job runs on its output.

Each job reads its inputs first (every year, all checks), then writes one new run folder
staged under a hidden name and committed only when complete.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import shapely

from . import fad as fad_stats
from ..geodata.area import read_polygons
from .assessment import assess_year, scatter_chart_data
from ..names import changes_layer
from .charts import write_chart
from ..geodata.crs import describe
from ..errors import InputError
from .series import YearInventory, read_series
from ..jobs.specs import AnalyseJob, SubtractJob, job_to_json
from ..progress import WARNING_PREFIX, Reporter
from ..jobs.run_folder import RunFolder
from .subtraction import SubtractionSettings, YearChange, subtract_series
from ..geodata.vector_io import VectorLayer, write_geopackage
from .year_stats import (YearStatistics, add_changes, bounding_box_km2, rows_csv, statistics_csv,
                         trend_chart_data, year_statistics)

CHANGES_GPKG = "changes.gpkg"
CHART_DIR = "charts"


@dataclass
class AnalysisResult:
    run_dir: str
    statistics: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    geopackage: str | None = None
    crs: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def exponents(self) -> dict[int, dict]:
        """Per year: the power-law exponent of the mapped and of the new landslides."""
        return {s["year"]: {"alpha": s.get("alpha"), "alpha_se": s.get("alpha_se"),
                            "x_min_m2": s.get("x_min_m2"), "mls": s.get("mls"),
                            "new_alpha": s.get("new_alpha")} for s in self.statistics}


def _fad_columns(result: fad_stats.FADResult, prefix: str = "") -> dict:
    pl, dps, ig, mls = result.power_law, result.dps, result.inverse_gamma, result.mls
    r = lambda v, k=4: None if v is None else round(float(v), k)  # noqa: E731
    return {
        f"{prefix}alpha": r(pl.alpha) if pl else None,
        f"{prefix}alpha_se": r(pl.alpha_se) if pl else None,
        f"{prefix}x_min_m2": r(pl.x_min, 2) if pl else None,
        f"{prefix}n_tail": pl.n_tail if pl else None,
        f"{prefix}mls": r(mls.mls, 3) if mls else None,
        f"{prefix}dps_tail_exponent": r(dps.tail_exponent) if dps else None,
        f"{prefix}inverse_gamma_tail_exponent": r(ig.tail_exponent) if ig else None,
        f"{prefix}rollover_m2": r(result.rollover_m2, 2),
    }


def analyse_series(series: list[YearInventory], run: RunFolder, reporter: Reporter,
                   mapped_km2: dict[int, float] | None = None, extent_source: str = "unknown",
                   changes: list[YearChange] | None = None, bootstrap: int = 0,
                   true_exponent: float | None = None) -> AnalysisResult:
    """Statistics, FAD fits and charts of every year (and of its new/enlarged parts)."""
    mapped_km2 = mapped_km2 or {}
    by_year = {c.year: c for c in (changes or [])}
    stats: list[YearStatistics] = []
    rows: list[dict] = []
    fad_series, new_fad_series = [], []
    n = len(series)
    for i, inv in enumerate(series):
        reporter.progress(i / max(n, 1), f"Statistics and FAD of {inv.year}")
        areas = inv.areas
        s = year_statistics(inv.year, areas, mapped_km2.get(inv.year), extent_source)
        change = by_year.get(inv.year)
        if change is not None:
            add_changes(s, change.summary())
        fad = fad_stats.analyse_fad(areas, bootstrap=bootstrap)
        row = {**s.to_dict(), **_fad_columns(fad), "cleaning": inv.cleaning.to_dict(),
               "fad": fad.to_dict()}
        fad_series.append(fad_stats.fad_chart_series(fad, str(inv.year)))
        if change is not None and len(change):
            new_fad = fad_stats.analyse_fad(change.areas, bootstrap=bootstrap)
            row.update(_fad_columns(new_fad, "new_"))
            row["new_fad"] = new_fad.to_dict()
            new_fad_series.append(fad_stats.fad_chart_series(new_fad, str(inv.year)))
        stats.append(s)
        rows.append(row)
        if fad.power_law is not None:
            reporter.log(f"{inv.year}: {s.count} landslides, {s.total_area_m2:,.0f} m²; power-law "
                         f"α = {fad.power_law.alpha:.2f} ± {fad.power_law.alpha_se:.2f} above "
                         f"{fad.power_law.x_min:,.0f} m²" +
                         (f", mLS {fad.mls.mls:.2f}" if fad.mls else ""))
        else:
            reporter.log(f"{inv.year}: {s.count} landslides, {s.total_area_m2:,.0f} m²; no power-law "
                         f"fit ({fad.skipped.get('power_law', 'not done')}).")

    charts_dir = run.path(CHART_DIR)
    charts_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    written += write_chart({"kind": "fad", "title": "Frequency-area distribution of mapped landslides",
                            "true_exponent": true_exponent, "series": fad_series}, charts_dir / "fad")
    if new_fad_series:
        written += write_chart({"kind": "fad", "title": "Frequency-area distribution of new and "
                                "enlarged landslides", "true_exponent": true_exponent,
                                "series": new_fad_series}, charts_dir / "fad_new")
    written += write_chart(trend_chart_data(stats), charts_dir / "trend")

    extra = {r["year"]: {k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows}
    run.path("statistics.csv").write_text(statistics_csv(stats, extra))
    change_summaries = [c.summary() for c in (changes or [])]
    run.path("statistics.json").write_text(json.dumps(
        {"extent_source": extent_source, "years": rows, "changes": change_summaries},
        indent=2, default=_json_default) + "\n")
    reporter.progress(1.0, "Statistics written")
    return AnalysisResult(run_dir=".", statistics=[
        {k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows],
        changes=change_summaries, charts=[str(Path(CHART_DIR) / p.name) for p in written])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _extent_km2(job: AnalyseJob, series: list[YearInventory], log) -> tuple[dict[int, float], str]:
    years = [s.year for s in series]
    if job.mapped_area_km2:
        return {y: float(job.mapped_area_km2) for y in years}, "given"
    if job.extent:
        geoms = read_polygons(job.extent, series[0].crs, "The mapped-extent layer", log)
        km2 = float(shapely.area(shapely.union_all(geoms))) / 1e6
        return {y: km2 for y in years}, "extent layer"
    km2 = _bounding_box_km2(series)
    log(f"No mapped area given: densities are per km² of the bounding box of all years "
        f"({km2:,.2f} km²), which overstates the area really mapped; give --mapped-area-km2 or "
        "--extent for true densities.")
    return ({y: km2 for y in years} if km2 > 0 else {}), "bounding box of all years"


def _bounding_box_km2(series: list[YearInventory]) -> float:
    bounds = np.array([shapely.total_bounds(s.geometries) for s in series if len(s)])
    return bounding_box_km2(bounds) if len(bounds) else 0.0


def _filter_small(series: list[YearInventory], min_area_m2: float, log) -> None:
    if min_area_m2 <= 0:
        return
    for inv in series:
        keep = inv.areas >= min_area_m2
        if (~keep).any():
            log(f"{inv.year}: {int((~keep).sum())} polygons below {min_area_m2:g} m² left out.")
            inv.geometries, inv.source_fid = inv.geometries[keep], inv.source_fid[keep]
            inv.fields = {k: v[keep] for k, v in inv.fields.items()}


def run_analyse(job: AnalyseJob, reporter: Reporter | None = None) -> AnalysisResult:
    reporter = reporter or Reporter()
    job.validate()
    series = read_series(list(job.years), reporter.log)
    _filter_small(series, job.min_area_m2, reporter.log)
    mapped, source = _extent_km2(job, series, reporter.log)
    with RunFolder(job.output_dir, job.run_name or time.strftime("analysis_%Y%m%d_%H%M%S"), reporter.log) as run:
        run.path("job.json").write_text(job_to_json(job, absolute=True) + "\n")
        result = analyse_series(series, run, reporter.sub(0.0, 0.99), mapped, source,
                                bootstrap=job.bootstrap, true_exponent=job.true_exponent)
        result.crs = _crs_name(series)
        reporter.progress(1.0, "done")
        final = run.commit()
    result.run_dir = str(final)
    return result


def _crs_name(series: list[YearInventory]) -> str | None:
    return describe(series[0].crs) if series and series[0].crs is not None else None


FAR_APART_M = 50_000        # inventories of consecutive years this far apart are not the same area


def _check_apart(series: list[YearInventory], log) -> None:
    """Consecutive years whose landslides lie far apart cannot be subtracted (everything would
    be new): refused; years whose extents merely do not touch get a warning."""
    for before, after in zip(series, series[1:]):
        if not len(before) or not len(after):
            continue
        a, b = shapely.total_bounds(before.geometries), shapely.total_bounds(after.geometries)
        gap = math.hypot(max(0.0, b[0] - a[2], a[0] - b[2]), max(0.0, b[1] - a[3], a[1] - b[3]))
        if gap > FAR_APART_M:
            raise InputError(f"The landslides of {after.year} ({after.name}) lie {gap / 1000:,.0f} km from those of "
                             f"{before.year} ({before.name}): they are not inventories of the same area, and "
                             "subtracting them would call every landslide new. Check the layers and their CRS.")
        if gap > 0:
            log(f"{WARNING_PREFIX}the landslides of {after.year} and {before.year} do not share any extent "
                f"({gap / 1000:,.1f} km apart): every landslide of {after.year} will be new.")


def change_layers(changes: list[YearChange], crs_wkt: str | None) -> dict:
    return {changes_layer(c.year): c.to_layer(crs_wkt) for c in changes}


def run_subtract(job: SubtractJob, reporter: Reporter | None = None) -> AnalysisResult:
    reporter = reporter or Reporter()
    job.validate()
    series = read_series(list(job.years), reporter.log, keep_fields=("mean_prob",))
    _check_apart(series, reporter.log)
    settings = SubtractionSettings.for_pixel_size(job.pixel_size_m, job.sliver_px, job.min_remnant_px)
    reporter.log(f"Sliver buffer {settings.sliver_buffer_m:g} m, minimum remnant "
                 f"{settings.min_remnant_m2:g} m².")
    with RunFolder(job.output_dir, job.run_name or time.strftime("subtraction_%Y%m%d_%H%M%S"), reporter.log) as run:
        run.path("job.json").write_text(job_to_json(job, absolute=True) + "\n")
        changes = subtract_series(series, settings, reporter.sub(0.0, 0.5))
        crs = series[0].crs
        write_geopackage(run.path(CHANGES_GPKG), change_layers(changes, crs.to_wkt() if crs else None))
        km2 = _bounding_box_km2(series)
        result = analyse_series(series, run, reporter.sub(0.5, 0.99),
                                {s.year: km2 for s in series} if km2 else {},
                                "bounding box of all years", changes)
        run.path("subtraction.json").write_text(json.dumps({
            "settings": settings.to_dict(),
            "inputs": [{"year": s.year, "source": s.name, **s.cleaning.to_dict()} for s in series],
            "changes": [c.summary() for c in changes]}, indent=2) + "\n")
        result.geopackage = CHANGES_GPKG
        result.crs = _crs_name(series)
        reporter.progress(1.0, "done")
        final = run.commit()
    result.run_dir = str(final)
    result.geopackage = str(final / CHANGES_GPKG)
    return result


@dataclass
class AssessResult:
    run_dir: str
    rows: list[dict] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    geopackage: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _assessment_row(a) -> dict:
    p, inv, obj = a.pixel, a.inventory, a.objects
    num = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 4)  # noqa: E731
    return {"year": a.year, "precision": num(p.precision), "recall": num(p.recall), "f1": num(p.f1),
            "mcc": num(p.mcc), "iou": num(p.iou), "tp": p.tp, "fp": p.fp, "fn": p.fn, "tn": p.tn,
            "reference_count": inv["reference"].count, "predicted_count": inv["predicted"].count,
            "reference_area_m2": round(inv["reference"].total_m2, 2),
            "predicted_area_m2": round(inv["predicted"].total_m2, 2),
            "reference_min_m2": num(inv["reference"].min_m2), "predicted_min_m2": num(inv["predicted"].min_m2),
            "reference_max_m2": num(inv["reference"].max_m2), "predicted_max_m2": num(inv["predicted"].max_m2),
            "object_precision": num(obj.precision), "object_recall": num(obj.recall),
            "object_f1": num(obj.f1), "matched_groups": obj.n_groups,
            "false_alarms": obj.false_alarms, "missed_reference": obj.missed_reference}


def run_assess(job, reporter: Reporter | None = None) -> AssessResult:
    reporter = reporter or Reporter()
    job.validate()
    predicted = {s.year: s for s in read_series(list(job.predicted), reporter.log)}
    crs = next(iter(predicted.values())).crs
    reference = {s.year: s for s in read_series(list(job.reference), reporter.log, target=crs)}
    area = read_polygons(job.area, crs, "The assessment area", reporter.log) if job.area else None
    grids = {g.year: g.path for g in job.grids}
    years = sorted(set(predicted) & set(reference))
    for y in sorted(set(predicted) ^ set(reference)):
        reporter.log(f"{y}: only a {'predicted' if y in predicted else 'reference'} inventory; "
                     "not assessed.")
    assessments, layers = [], {}
    with RunFolder(job.output_dir, job.run_name or time.strftime("assessment_%Y%m%d_%H%M%S"), reporter.log) as run:
        run.path("job.json").write_text(job_to_json(job, absolute=True) + "\n")
        for i, y in enumerate(years):
            part = reporter.sub(i / len(years), (i + 1) / len(years) * 0.95)
            a = assess_year(predicted[y].geometries, reference[y].geometries, y, grids.get(y),
                            job.pixel_size_m, area, part, crs=crs.to_wkt() if crs else None)
            assessments.append(a)
            wkt = crs.to_wkt() if crs else None
            for what, inv, table in (("predicted", predicted[y], a.predicted),
                                     ("reference", reference[y], a.reference)):
                layers[f"{what}_{y}"] = VectorLayer(inv.geometries, {
                    "year": np.full(len(inv), y, np.int64), "source_fid": inv.source_fid,
                    **{k: np.asarray(v) for k, v in table.fields().items()}}, wkt)
            row = _assessment_row(a)
            reporter.log(f"{y}: precision {row['precision']}, recall {row['recall']}, F1 {row['f1']}, "
                         f"MCC {row['mcc']}, IoU {row['iou']}; {row['predicted_count']} predicted vs "
                         f"{row['reference_count']} reference polygons.")
        rows = [_assessment_row(a) for a in assessments]
        write_geopackage(run.path("assessment.gpkg"), layers)
        run.path("accuracy.json").write_text(json.dumps(
            {"years": [a.to_dict(per_object=False) for a in assessments]}, indent=2) + "\n")
        run.path("accuracy.csv").write_text(rows_csv(rows))
        charts_dir = run.path(CHART_DIR)
        charts_dir.mkdir()
        written = write_chart(scatter_chart_data(assessments), charts_dir / "area_scatter")
        reporter.progress(1.0, "done")
        final = run.commit()
    return AssessResult(str(final), rows, [str(Path(CHART_DIR) / p.name) for p in written],
                        str(final / "assessment.gpkg"))

