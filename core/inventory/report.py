"""A self-contained HTML page of a run: its statistics table and its charts.

Processing shows it in the Results Viewer and a browser opens it anywhere; the PNG charts
are embedded, so the page can be mailed or archived on its own.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from ..errors import OutputError
from .fad import thin_fit_warnings

REPORT_NAME = "report.html"

# Columns of the statistics table worth a glance; the CSV beside it has them all.
SUMMARY_COLUMNS = (
    ("year", "Year"), ("count", "Landslides"), ("total_area_m2", "Total area (m²)"),
    ("median_area_m2", "Median area (m²)"), ("density_per_km2", "Density (per km²)"),
    ("areal_density_pct", "Areal density (%)"), ("new", "New"), ("enlarged", "Enlarged"),
    ("alpha", "FAD exponent α"), ("alpha_se", "± SE"), ("x_min_m2", "x_min (m²)"),
    ("new_alpha", "α of new"), ("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"),
    ("iou", "IoU"), ("mcc", "MCC"),
)


def _cell(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(run_dir: str | Path, title: str, rows: list[dict], charts: list[str],
                 notes: list[str] = ()) -> Path:
    """Write ``run_dir/report.html`` (refusing to overwrite one) and return its path.

    ``rows`` are per-year dicts (statistics or accuracy); ``charts`` are paths relative to
    ``run_dir`` as the run results list them (only the PNGs are shown)."""
    run_dir = Path(run_dir)
    target = run_dir / REPORT_NAME
    if target.exists():
        raise OutputError(f"{target} already exists; refusing to overwrite it.")
    columns = [(key, label) for key, label in SUMMARY_COLUMNS if any(key in r for r in rows)]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(key))}</td>" for key, _ in columns) + "</tr>"
                   for r in sorted(rows, key=lambda r: r.get("year", 0)))
    images = [_png(run_dir / c) for c in charts if c.endswith(".png") and (run_dir / c).is_file()]
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>Run folder: <code>{html.escape(str(run_dir))}</code></p>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    parts += [f'<p style="color:#b9770e">⚠ {html.escape(w)}</p>' for w in thin_fit_warnings(rows)]
    if rows:
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts += [f"<p>{img}</p>" for img in images]
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}img{max-width:100%}</style>"
            "</head><body>" + "\n".join(parts) + "</body></html>\n")
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)
    return target


# The report's title per kind of run: the dock and Processing write the same page
REPORT_TITLES = {"mapping": "Landslide mapping", "subtract": "Temporal subtraction",
                 "statistics": "Inventory statistics", "accuracy": "Accuracy"}


def run_report(result: dict, kind: str) -> Path | None:
    """The run's ``report.html`` for a finished run (a worker result dict): its statistics
    or accuracy rows and its PNG charts. Written once: a report already there (written by
    the other of the dock and Processing) is reused. None when the run has nothing to
    report or the page cannot be written (a report is never worth failing a run for)."""
    run_dir = Path(result["run_dir"])
    target = run_dir / REPORT_NAME
    if target.is_file():
        return target
    rows = result.get("statistics") or result.get("rows") or []
    charts = result.get("charts") or []
    if not rows and not charts:
        return None
    try:
        return write_report(run_dir, f"{REPORT_TITLES[kind]} {run_dir.name}", rows, charts)
    except (OSError, OutputError):
        return None
