"""Any chart drawn by its kind, its figure size, and the PNG, SVG and JSON files of a chart."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...errors import InputError, OutputError
from .area_scatter_chart import draw_area_scatter
from .fad_chart import draw_fad
from .schema import validate_chart
from .style import DPI, ChartDataError, _widen_for_outside_legend
from .trend_chart import _trend_categories, draw_trend

_DRAW: dict[str, Callable[..., None]] = {
    "fad": draw_fad, "trend": draw_trend, "area_scatter": draw_area_scatter}


def draw_chart(fig: Figure, data: dict, **options) -> None:
    """Draw any chart dict onto ``fig``, choosing the function by ``data["kind"]``."""
    data = validate_chart(data)
    _DRAW[data["kind"]](fig, data, **options)


def figure_size(data: dict) -> tuple[float, float]:
    """Width and height in inches of the chart without a legend beside the axes (write_chart
    widens the figure by that legend's width)."""
    kind = data.get("kind")
    if kind == "fad":
        return 8.0, 5.5
    if kind == "trend":
        years = data.get("years") or []
        k = len(_trend_categories([int(y) for y in years]))
        n = max(len(data.get("series") or []), 1)
        return float(min(16.0, max(8.0, 2.5 + 0.45 * k * n))), 5.0
    return 7.0, 8.0


def _target(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)


def write_chart(data: dict, stem: str | os.PathLike, **options) -> list[Path]:
    """Write the chart as ``<stem>.png`` (150 dpi), ``<stem>.svg`` and ``<stem>.json``.

    ``data["kind"]`` chooses the chart; ``options`` go to its ``draw_*`` function (e.g.
    ``fits="all"`` for a FAD). Each file is written under a hidden temporary name in the same
    folder and renamed into place only when all three are complete. Existing files are never
    overwritten: :class:`OutputError` if any of the three exists. Returns the three paths.
    """
    data = validate_chart(data)
    stem = Path(stem)
    targets = [_target(stem, suffix) for suffix in (".png", ".svg", ".json")]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise OutputError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          "refusing to overwrite. Choose another name or remove the old chart.")
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {stem.parent} for the chart: "
                          f"{exc.strerror or exc}.") from None

    fig = Figure(figsize=figure_size(data), dpi=DPI)
    FigureCanvasAgg(fig)
    _DRAW[data["kind"]](fig, data, **options)
    _widen_for_outside_legend(fig)

    temps: list[Path] = []
    placed: list[Path] = []
    token = secrets.token_hex(4)
    try:
        for target in targets:
            tmp = target.parent / f".{target.name}.{token}.partial"
            temps.append(tmp)
            with open(tmp, "xb") as fh:
                if target.suffix == ".png":
                    fig.savefig(fh, format="png", dpi=DPI)
                elif target.suffix == ".svg":
                    # text stays text (searchable, editable); fixed ids make the file reproducible
                    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "landslide-mapper"}):
                        fig.savefig(fh, format="svg", dpi=DPI, metadata={"Date": None})
                else:
                    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
                    fh.write(text.encode("utf-8") + b"\n")
        for target in targets:
            if target.exists():
                raise OutputError(f"{target} appeared while the chart was being written; "
                                  "refusing to overwrite it.")
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
            placed.append(target)
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise OutputError(f"Cannot write the chart {stem}.png/.svg/.json: {exc.strerror or exc}.") from None
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return targets


def load_chart(path_json: str | os.PathLike) -> dict:
    """Read a chart JSON file written by :func:`write_chart` and check it against the schema.

    Raises :class:`InputError` when the file cannot be read and :class:`ChartDataError`
    (naming the file and the missing or wrong key) when it is not a valid chart.
    """
    path = Path(path_json)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"The chart file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the chart file {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChartDataError(f"The chart file {path} is not valid JSON: {exc.msg} "
                             f"(line {exc.lineno}, column {exc.colno}).") from None
    return validate_chart(data, source=path)
