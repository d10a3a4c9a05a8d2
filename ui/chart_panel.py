"""A dock that shows the charts and statistics of a finished run folder beside the map.

A run folder already holds its charts as PNG/SVG and, beside them, the validated chart data
(``charts/*.json``). This panel draws that data again with the very ``draw_*`` functions of
:mod:`core.inventory.charts` that the headless command line uses, so the two never drift apart, and it
lets the user leave years out, switch charts and export what is shown. The per-year statistics
(``statistics.json``) are listed in a sortable table below. Problems (no charts, a damaged
chart file) are shown in the panel, never raised into QGIS.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QLabel,
                                 QListWidget, QListWidgetItem, QMessageBox, QPushButton, QSplitter,
                                 QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

# after qgis.PyQt, so that matplotlib's Qt backend takes the PyQt5 that QGIS uses
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure

from ..core.inventory.charts import draw_chart, figure_size, load_chart
from ..core.errors import InputError
from ..core.inventory.fad import FEW_TAIL_AREAS, thin_fit_warnings, thin_fits
from ..core.palette import year_colour

WARNING_COLOUR = "#b9770e"

EXPORT_DPI = 200
CHART_NAMES = {"fad": "Frequency–area distribution", "fad_new": "FAD of new/enlarged landslides",
               "trend": "Trend over years", "area_scatter": "Predicted vs reference areas"}
KIND_NAMES = {"fad": "Frequency–area distribution", "trend": "Trend over years",
              "area_scatter": "Predicted vs reference areas"}
# (header, statistics key, decimals); a column whose key no year has is left out. The fit
# comes first after the count, so that it stays in view in a narrow table.
COLUMNS = [("Year", "year", 0), ("Polygons", "count", 0), ("α", "alpha", 2), ("α SE", "alpha_se", 2),
           ("Tail n", "n_tail", 0), ("x_min m²", "x_min_m2", 0), ("New", "new", 0), ("Enlarged", "enlarged", 0),
           ("α new", "new_alpha", 2), ("α new SE", "new_alpha_se", 2), ("Tail n new", "new_n_tail", 0),
           ("Total area m²", "total_area_m2", 0), ("Mean area m²", "mean_area_m2", 0),
           ("Median area m²", "median_area_m2", 0), ("Density per km²", "density_per_km2", 2),
           ("Areal density %", "areal_density_pct", 3)]
COLUMN_TIPS = {"alpha": "Power-law exponent of the frequency-area distribution's tail (above x_min)",
               "alpha_se": "Standard error of α: (α − 1) / √(tail n)",
               "n_tail": "Polygons above x_min that the power law was fitted to",
               "x_min_m2": "Smallest area of the power-law tail",
               "new_alpha": "α of the new and enlarged landslides of the year"}
# the FAD chart's fit choices: (label, core.inventory.charts.draw_fad's fits argument)
FIT_CHOICES = [("Fits: automatic", None), ("All fits", "all"), ("Power law", "power_law"),
               ("Double Pareto", "dps"), ("Inverse gamma", "inverse_gamma")]


def _year_of(label) -> int | None:
    """The year a series label or pair year stands for, or None when it is not a year."""
    try:
        return int(str(label).strip())
    except ValueError:
        return None


def chart_years(data: dict) -> list[int]:
    """The years of the per-year series of a chart (sorted), empty when it has none."""
    kind = data.get("kind")
    if kind == "trend":
        found = data.get("years") or []
    elif kind == "fad":
        found = [_year_of(s.get("label")) for s in data.get("series") or []]
    else:
        found = [_year_of(p.get("year")) for p in data.get("pairs") or []]
    return sorted({int(y) for y in found if y is not None})


def filter_years(data: dict, hidden: set[int]) -> dict:
    """A copy of the chart data without the years in ``hidden``. A trend chart loses those
    categories (each series' values at those years); a FAD its series, an area scatter its pairs."""
    data = copy.deepcopy(data)
    kind = data.get("kind")
    if kind == "trend":
        keep = [i for i, y in enumerate(data.get("years") or []) if int(y) not in hidden]
        data["hidden_years"] = sorted({int(y) for y in data.get("years") or []} & set(hidden))
        data["years"] = [data["years"][i] for i in keep]
        for s in data.get("series") or []:
            for key in ("count", "area_m2"):
                if s.get(key) is not None:
                    s[key] = [s[key][i] for i in keep]
    elif kind == "fad":
        data["series"] = [s for s in data.get("series") or [] if _year_of(s.get("label")) not in hidden]
    elif kind == "area_scatter":
        data["pairs"] = [p for p in data.get("pairs") or [] if _year_of(p.get("year")) not in hidden]
    return data


class _SortItem(QTableWidgetItem):
    """A table cell that sorts by its number, not by its text (empty cells first)."""

    def __init__(self, text: str, key: float | None):
        super().__init__(text)
        self.key = key

    def __lt__(self, other):
        a, b = self.key, getattr(other, "key", None)
        if a is None or b is None:
            return a is None and b is not None
        return a < b


class ChartPanel(QgsDockWidget):
    """Charts and per-year statistics of one run folder; see :meth:`show_run`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Landslide Mapper charts", parent)
        self.setObjectName("LandslideMapperChartPanel")
        self._run_dir: Path | None = None
        self._charts: dict[str, tuple[str, dict]] = {}   # human name -> (file stem, data)
        self._hidden: set[int] = set()
        self._shown: dict = {}

        self.combo = QComboBox()
        self.fits_combo = QComboBox()
        self.fits_combo.setObjectName("fitsCombo")
        self.fits_combo.setToolTip("Which fitted curves the frequency-area chart shows: automatic shows every "
                                   "fit for up to three years and the power law beyond")
        for label, value in FIT_CHOICES:
            self.fits_combo.addItem(label, value)
        self._legend_place = "below"           # the panel's shape decides: see _follow_dock_area
        self.png_button = QPushButton("Export PNG…")
        self.svg_button = QPushButton("Export SVG…")
        top = QHBoxLayout()
        top.addWidget(self.combo, 1)
        top.addWidget(self.fits_combo)
        top.addWidget(self.png_button)
        top.addWidget(self.svg_button)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        self.fit_warning = QLabel()
        self.fit_warning.setObjectName("fitWarning")
        self.fit_warning.setWordWrap(True)
        self.fit_warning.hide()
        self.legend_note = QLabel("The legend does not fit this panel: enlarge it or export the chart. "
                                  "The years' colours are in the list on the left.")
        self.legend_note.setObjectName("legendNote")
        self.legend_note.setWordWrap(True)
        self.legend_note.hide()
        self.year_list = QListWidget()
        self.year_list.setToolTip("Untick a year to leave it out of the chart")
        self.year_list.setFixedWidth(90)
        self.figure = Figure(figsize=(7.0, 4.5))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()

        self.toolbar = NavigationToolbar2QT(self.canvas, None)
        plot = QVBoxLayout()
        plot.addWidget(self.toolbar)
        plot.addWidget(self.legend_note)
        plot.addWidget(self.canvas, 1)
        chart_area = QWidget()
        row = QHBoxLayout(chart_area)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.year_list)
        row.addLayout(plot, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(chart_area)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        self.splitter = split
        self.dockLocationChanged.connect(self._follow_dock_area)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(self.fit_warning)
        layout.addWidget(split, 1)
        self.setWidget(body)

        self.combo.currentIndexChanged.connect(self._chart_changed)
        self.fits_combo.currentIndexChanged.connect(lambda *_: self._redraw())
        self.year_list.itemChanged.connect(self._year_toggled)
        self.png_button.clicked.connect(lambda: self._export_dialog(".png"))
        self.svg_button.clicked.connect(lambda: self._export_dialog(".svg"))
        self._set_enabled(False)

    def _follow_dock_area(self, area) -> None:
        """Below or above the map the panel is wide and low: table beside the chart, not under
        it, and the legend beside the axes; at the side, the legend goes under them."""
        wide = area in (Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.TopDockWidgetArea)
        self.splitter.setOrientation(Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical)
        total = self.splitter.width() if wide else self.splitter.height()
        self.splitter.setSizes([int(total * 0.7), int(total * 0.3)])
        place = "beside" if wide else "below"
        if place != self._legend_place:
            self._legend_place = place
            self._redraw()

    def legend_place(self) -> str:
        return self._legend_place

    def set_fits(self, fits) -> None:
        """Show these fits on the FAD chart: None (automatic), "all", or one fit's name."""
        index = self.fits_combo.findData(fits)
        if index < 0:
            raise ValueError(f"No fit choice {fits!r}; choose one of {[v for _, v in FIT_CHOICES]}.")
        self.fits_combo.setCurrentIndex(index)

    def warning_text(self) -> str:
        """The fits on few polygons: the line shown and, after it, each fit's sentence."""
        return f"{self.fit_warning.text()}\n{self.fit_warning.toolTip()}"

    # ------------------------------------------------------------------ public API

    @property
    def run_dir(self) -> Path | None:
        return self._run_dir

    def show_run(self, run_dir: str | Path) -> None:
        """Show the charts and statistics of ``run_dir``; problems become a message in the panel."""
        self._run_dir = Path(run_dir)
        self._charts, self._hidden, problems = {}, set(), []
        folder = self._run_dir / "charts"
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        order = list(CHART_NAMES)
        files.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.stem))
        for path in files:
            try:
                data = load_chart(path)
            except InputError as exc:  # ChartDataError is one
                problems.append(str(exc))
                continue
            name = CHART_NAMES.get(path.stem) or KIND_NAMES.get(data["kind"], path.stem)
            if name in self._charts:
                name = f"{name} ({path.stem})"
            self._charts[name] = (path.stem, data)
        if not self._run_dir.is_dir():
            problems.insert(0, f"The run folder {self._run_dir} does not exist.")
        elif not self._charts and not problems:
            problems.append(f"No charts in {folder}: this run has no chart data (charts/*.json).")
        problems += self._fill_table()
        self._set_message("\n".join(problems))
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(list(self._charts))
        self.combo.blockSignals(False)
        self._chart_changed()

    def chart_names(self) -> list[str]:
        return list(self._charts)

    def current_chart(self) -> str:
        return self.combo.currentText()

    def set_chart(self, name: str) -> None:
        """Show the chart of this human name or file stem (``"fad"``, ``"trend"`` …)."""
        for i, (human, (stem, _)) in enumerate(self._charts.items()):
            if name in (human, stem):
                self.combo.setCurrentIndex(i)
                return
        raise ValueError(f"No chart {name!r} in this run; it has: {', '.join(self._charts) or 'none'}.")

    def years(self) -> list[int]:
        return [self.year_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.year_list.count())]

    def set_year_visible(self, year: int, visible: bool) -> None:
        for i in range(self.year_list.count()):
            item = self.year_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == int(year):
                # redraws via itemChanged
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
                return
        raise ValueError(f"The chart {self.current_chart()!r} has no year {year}.")

    def shown_data(self) -> dict:
        """The (filtered) chart data last drawn; empty when no chart is shown."""
        return copy.deepcopy(self._shown)

    def table_headers(self) -> list[str]:
        return [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())]

    def table_rows(self) -> list[list[str]]:
        return [[self.table.item(r, c).text() for c in range(self.table.columnCount())]
                for r in range(self.table.rowCount())]

    def message_text(self) -> str:
        return self.message.text()

    def export(self, path: str | Path) -> Path:
        """Write the chart as shown (years left out stay out) to ``path``: PNG at 200 dpi or SVG,
        by the suffix, at the size of the run's own chart files."""
        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg"):
            raise ValueError(f"Cannot export the chart as {path.name!r}: the file name must end in "
                             ".png or .svg.")
        if not self._shown:
            raise ValueError("No chart is shown, so there is nothing to export.")
        fig = Figure(figsize=figure_size(self._shown))
        FigureCanvasAgg(fig)
        # the run's own chart layout and full legend, with the years and fits shown here
        draw_chart(fig, self._shown, **({"fits": self.fits_combo.currentData()}
                                        if self._shown.get("kind") == "fad" else {}))
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(path, format=fmt, dpi=EXPORT_DPI, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else None)
        return path

    # ------------------------------------------------------------------ internals

    def _set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _set_enabled(self, on: bool) -> None:
        for w in (self.combo, self.png_button, self.svg_button, self.canvas, self.toolbar):
            w.setEnabled(on)

    def _chart_changed(self, *_) -> None:
        entry = self._charts.get(self.combo.currentText())
        self.year_list.blockSignals(True)
        self.year_list.clear()
        for year in chart_years(entry[1]) if entry else []:
            item = QListWidgetItem(str(year))
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(year_colour(year)))          # the year's colour on the map and the chart
            item.setIcon(QIcon(swatch))
            item.setData(Qt.ItemDataRole.UserRole, year)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Unchecked if year in self._hidden else Qt.CheckState.Checked)
            self.year_list.addItem(item)
        self.year_list.setEnabled(self.year_list.count() > 0)
        self.year_list.blockSignals(False)
        self._redraw()

    def _year_toggled(self, item: QListWidgetItem) -> None:
        year = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._hidden.discard(year)
        else:
            self._hidden.add(year)
        self._redraw()

    def _redraw(self) -> None:
        entry = self._charts.get(self.combo.currentText())
        self._shown = {}
        self._blank()
        if entry is not None:
            data = filter_years(entry[1], self._hidden)
            try:
                self._draw_with_legend(data)
                self._shown = data
            except Exception as exc:  # noqa: BLE001 — a Qt slot: never raise into QGIS
                self._blank()
                self._set_message(f"Cannot draw the chart {entry[0]}: {exc}")
        self._set_enabled(bool(self._shown))
        self.combo.setEnabled(bool(self._charts))
        self.fits_combo.setVisible(bool(self._shown) and self._shown.get("kind") == "fad")
        self.toolbar.update()  # a new drawing: forget the old zoom/pan history
        self.canvas.draw_idle()

    def _draw_with_legend(self, data: dict) -> None:
        """Draw with the legend where the panel's shape wants it; where it does not fit
        (a long legend in a small panel), in the other place outside the axes; where neither
        fits, without it, saying so (the year list carries the years' colours)."""
        other = "below" if self._legend_place == "beside" else "beside"
        for place in (self._legend_place, other):
            draw_chart(self.figure, data, **self._options(data, place))
            for ax in self.figure.axes:          # the chart picker above names it: room for the data
                ax.set_title("")
            if self._legend_fits():
                self.legend_note.hide()
                return
        for ax in self.figure.axes:
            if ax.get_legend() is not None:
                ax.get_legend().set_visible(False)
        self.legend_note.show()

    def _legend_fits(self) -> bool:
        """The legend lies inside the figure and leaves the axes a usable size."""
        legends = [ax.get_legend() for ax in self.figure.axes if ax.get_legend() is not None]
        if not legends:
            return True
        with warnings.catch_warnings():     # a legend too wide for tight layout: judged below
            warnings.simplefilter("ignore", UserWarning)
            self.canvas.draw()               # lays the figure out
        renderer = self.canvas.get_renderer()
        fig = self.figure.bbox
        box = legends[0].get_window_extent(renderer)
        axes = self.figure.axes[0].get_window_extent(renderer)
        inside = box.x0 >= fig.x0 - 1 and box.x1 <= fig.x1 + 1 and box.y0 >= fig.y0 - 1 and box.y1 <= fig.y1 + 1
        beside = box.x0 >= axes.x1 - 1
        # the legend may take up to 60 % of the side it sits on
        return inside and (axes.width >= 0.4 * fig.width if beside else axes.height >= 0.4 * fig.height)

    def _options(self, data: dict, place: str | None = None) -> dict:
        """draw_chart's options for what the panel shows: the legend outside the data, and
        on the FAD chart the chosen fits."""
        options = {"legend": place or self._legend_place}
        if data.get("kind") == "fad":         # the fits' parameters are in the table beside
            options.update(fits=self.fits_combo.currentData(), brief_legend=True)
        return options

    def _blank(self) -> None:
        # axes out first: clearing axes that share a log x axis resets their limits and warns
        for ax in list(self.figure.axes):
            self.figure.delaxes(ax)
        self.figure.clear()

    def _statistics_rows(self) -> tuple[list[dict], str]:
        for name, key in (("statistics.json", "years"), ("summary.json", "statistics")):
            path = self._run_dir / name
            if path.is_file():
                try:
                    rows = json.loads(path.read_text(encoding="utf-8")).get(key) or []
                    return [r for r in rows if isinstance(r, dict)], ""
                except (OSError, ValueError, AttributeError) as exc:
                    return [], f"Cannot read the statistics {path}: {exc}"
        return [], ""

    def _fill_table(self) -> list[str]:
        rows, problem = self._statistics_rows() if self._run_dir.is_dir() else ([], "")
        columns = [c for c in COLUMNS if any(r.get(c[1]) is not None for r in rows)]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels([c[0] for c in columns])
        for c, (_, key, _d) in enumerate(columns):
            if key in COLUMN_TIPS:
                self.table.horizontalHeaderItem(c).setToolTip(COLUMN_TIPS[key])
        for r, row in enumerate(rows):
            for c, (_, key, digits) in enumerate(columns):
                value = row.get(key)
                number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                if number is None:
                    text = "" if value is None else str(value)
                elif key == "year":
                    text = str(int(number))
                else:
                    text = f"{number:,.{digits}f}"
                item = _SortItem(text, number)
                prefix = "new_" if key.startswith("new_") else ""
                if key in (f"{prefix}alpha", f"{prefix}alpha_se", f"{prefix}n_tail") and value is not None \
                        and (row.get(f"{prefix}n_tail") or 0) < FEW_TAIL_AREAS:
                    item.setForeground(QColor(WARNING_COLOUR))
                    item.setToolTip(f"Fitted to only {row.get(f'{prefix}n_tail')} polygons (fewer than "
                                    f"{FEW_TAIL_AREAS}): a rough estimate")
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        if columns:
            self.table.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.table.resizeColumnsToContents()
        # one line, so that the chart keeps its height; each fit's sentence in the tooltip
        thin = thin_fits(rows)
        short = ", ".join(f"{year}{' new' if prefix else ''} ({n})" for year, prefix, _a, n in thin)
        self.fit_warning.setText(f'<span style="color:{WARNING_COLOUR}">⚠ Power laws on fewer than '
                                 f'{FEW_TAIL_AREAS} polygons, α rough: {short}</span>' if thin else "")
        self.fit_warning.setToolTip("\n".join(thin_fit_warnings(rows)))
        self.fit_warning.setVisible(bool(thin))
        return [problem] if problem else []

    def _export_dialog(self, suffix: str) -> None:
        stem = self._charts[self.current_chart()][0] if self.current_chart() in self._charts else "chart"
        start = str((self._run_dir or Path.home()) / f"{stem}_shown{suffix}")
        kind = "PNG image (*.png)" if suffix == ".png" else "SVG drawing (*.svg)"
        path, _ = QFileDialog.getSaveFileName(self, f"Export the chart as {suffix[1:].upper()}", start, kind)
        if not path:
            return
        if Path(path).suffix.lower() != suffix:
            path += suffix
        try:
            self.export(path)
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self, "Landslide Mapper charts", f"The chart was not exported: {exc}")
