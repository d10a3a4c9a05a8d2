"""The dock's input checks before a job leaves: each reason shown in its row's Check cell
or under the field it concerns (qgis_io/inputs.py says what is wrong)."""
from __future__ import annotations

import os
from pathlib import Path

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QLabel, QTableWidget

from ..core.geodata.bands import DEFAULT_CHANNELS
from ..core.jobs.specs import bad_folder_characters
from ..qgis_io import inputs
from ..qgis_io.inputs import ERROR, Problem

MAP_SCOPE = ("years", "checkpoint", "output", "mapArea")      # the Map tab's fields with problems
ROW_OK = "OK"
COLOURS = {ERROR: QColor("#c0392b"), inputs.WARNING: QColor("#b9770e")}



class FormChecks:
    """Part of the dock (ui/dock.py): what is wrong with the form, and where it is shown."""

    def _output_problems(self) -> list[Problem]:
        folder = self.outputFolderWidget.filePath().strip()
        if not folder:
            return [Problem("output", "Choose an output folder.")]
        path = Path(folder)
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir():
            return [Problem("output", f"Output folder {folder} cannot be created: {existing} is not a folder.")]
        if not os.access(existing, os.W_OK):
            return [Problem("output", f"Output folder {folder} is not writable.")]
        return []

    def check_map(self) -> list[Problem]:
        rows = self.year_rows()
        problems = inputs.check_years([(y, lay) for y, lay, _b in rows])
        entry = self.selected_model()
        channels = entry.channels if entry else DEFAULT_CHANNELS
        for i, (_year, layer, bands) in enumerate(rows):
            problems += inputs.check_raster(layer, bands, channels, f"Row {i + 1}", f"years[{i}].layer")
        if entry is None:
            problems.append(Problem("checkpoint", "Choose a checkpoint (or use … to pick one)."))
        elif entry.card_problem and entry.is_checkpoint:
            problems.append(Problem("checkpoint", f"{entry.path}: {entry.card_problem}"))
        return problems + self.areaPicker.problems() + self._output_problems()

    def check_train(self) -> list[Problem]:
        problems = []
        base = self._entry(self.baseCheckpointCombo.currentData())
        if base is None or not base.is_checkpoint:
            problems.append(Problem("base", "Choose the cascade checkpoint to fine-tune (a plain ONNX model "
                                            "cannot be trained)."))
        channels = base.channels if base else DEFAULT_CHANNELS
        rows = self.training_rows()
        if not rows:
            problems.append(Problem("sources", "Add at least one row of training data."))
        for i, row in enumerate(rows):
            f = f"sources[{i}]"
            problems += inputs.check_raster(row["raster"], row["bands"], channels, f"Row {i + 1} image",
                                            f"{f}.raster", geographic=ERROR)
            problems += inputs.check_polygons(row["labels"], f"Row {i + 1} landslides", f"{f}.labels")
            problems += inputs.check_polygons(row["reviewed"], f"Row {i + 1} reviewed area", f"{f}.reviewed",
                                              required=False)
        name = self.newNameEdit.text().strip()
        if not name:
            problems.append(Problem("name", "Give the new checkpoint a name."))
        elif bad_folder_characters(name):
            problems.append(Problem("name", f"The name {name!r} contains {', '.join(bad_folder_characters(name))}, "
                                            "not allowed in a folder name."))
        elif (self.checkpoint_dir / name).exists():
            problems.append(Problem("name", f"{name} exists in {self.checkpoint_dir}: the new checkpoint will "
                                            "get a numbered suffix.", inputs.WARNING))
        return problems

    def _check_inventories(self, rows, field: str, minimum: int) -> list[Problem]:
        problems = inputs.check_years(rows, field)
        if rows and len(rows) < minimum:
            problems.append(Problem(field, f"Temporal subtraction needs at least {minimum} years."))
        for i, (_year, layer) in enumerate(rows):
            problems += inputs.check_polygons(layer, f"Row {i + 1}", f"{field}[{i}].layer")
        return problems

    def check_analysis(self, kind: str) -> list[Problem]:
        problems = self._check_inventories(self.inventory_rows(), "inventories", 2 if kind == "subtract" else 1)
        if kind == "assess":
            refs = self.reference_rows()
            problems += self._check_inventories(refs, "references", 1)
            common = {y for y, _ in self.inventory_rows()} & {y for y, _ in refs}
            if refs and not common - {0}:
                problems.append(Problem("references", "No year has both an inventory above and a reference "
                                                      "layer here."))
        if kind == "fad" and self.extentLayerCombo.currentLayer() is not None:
            problems += inputs.check_polygons(self.extentLayerCombo.currentLayer(), "Extent layer", "extent")
        if kind == "assess" and self.areaLayerCombo.currentLayer() is not None:
            problems += inputs.check_polygons(self.areaLayerCombo.currentLayer(), "Assessment area", "area")
        return problems + self._output_problems()

    def problems(self) -> list[Problem]:
        """What the last check found (errors and warnings)."""
        return list(self._problems)

    # ------------------------------------------------------------------ showing problems
    _TABLES = {"years": "yearsTable", "sources": "trainingTable", "inventories": "inventoryTable",
               "references": "referenceTable"}
    _LABELS = {"years": "yearsProblemLabel", "checkpoint": "checkpointProblemLabel", "output": "outputProblemLabel",
               "base": "baseProblemLabel", "sources": "sourcesProblemLabel", "name": "newNameProblemLabel",
               "inventories": "inventoryProblemLabel", "references": "referenceProblemLabel",
               "extent": "analyseStatusLabel", "area": "referenceProblemLabel", "mapArea": "mapAreaProblemLabel"}

    def show_problems(self, problems: list[Problem], scope: tuple[str, ...]) -> None:
        """Each problem next to its field: in its row's Check cell and under its table or field."""
        self._problems = problems
        for key in scope:
            table = getattr(self, self._TABLES[key], None) if key in self._TABLES else None
            if table is not None:
                for r in range(table.rowCount()):
                    row_problems = [p for p in problems if p.field.startswith(f"{key}[{r}]")]
                    self._set_check(table, r, row_problems)
            label = getattr(self, self._LABELS[key])
            picker = self._picker_problems if key == "checkpoint" else []
            self._set_label(label, [p for p in problems if p.field.split("[")[0] == key] + picker)

    def row_check(self, table: QTableWidget, row: int) -> str:
        """``OK``, or the reasons the row cannot be used (what its Check cell's tooltip says)."""
        item = table.item(row, table.columnCount() - 1)
        if item is None:
            return ""
        return item.data(Qt.ItemDataRole.UserRole) or item.text()

    def _set_check(self, table: QTableWidget, row: int, problems: list[Problem]) -> None:
        item = table.item(row, table.columnCount() - 1)
        if item is None:
            return
        worst = next((p for p in problems if p.severity == ERROR), problems[0] if problems else None)
        item.setText(ROW_OK if worst is None else ("✖ fix" if worst.severity == ERROR else "⚠ note"))
        item.setData(Qt.ItemDataRole.UserRole, "\n".join(p.message for p in problems) or None)
        item.setToolTip("\n".join(p.message for p in problems) or self.tr("Ready"))
        item.setForeground(COLOURS.get(worst.severity) if worst else QColor("#1e8449"))

    def _set_label(self, label: QLabel, problems: list[Problem]) -> None:
        """All the reasons under the table or field, errors first (row reasons name their row)."""
        shown = sorted(problems, key=lambda p: p.severity != ERROR)
        label.setVisible(bool(shown))
        label.setText("<br>".join(
            f'<span style="color:{COLOURS[p.severity].name()}">{_html(p.message)}</span>' for p in shown))

    def _status(self, label: QLabel, text: str, problem: bool = False) -> None:
        label.setVisible(bool(text))
        label.setText(f'<span style="color:{COLOURS[ERROR].name()}">{_html(text)}</span>' if problem else _html(text))

    def _revalidate(self, *_args) -> None:
        """Refresh the Check cells once the user has tried to run (or edits a listed row)."""
        if not self._problems:
            return
        tab = self.tabs.currentWidget()
        if tab is self.mapTab:
            self.show_problems(self.check_map(), MAP_SCOPE)
        elif tab is self.trainTab:
            self.show_problems(self.check_train(), ("base", "sources", "name"))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
