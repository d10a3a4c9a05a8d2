"""The dock's input tables: one row per year image, training source, inventory or
reference layer, with their layer pickers, year and band-mapping cells."""
from __future__ import annotations

from typing import Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (QComboBox, QFormLayout, QLineEdit, QSpinBox, QTableWidget, QTableWidgetItem,
                                 QWidget)

from .. import qgis_compat
from ..core.geodata.bands import PRESET_LABELS
from ..qgis_io import inputs



class InputRows:
    """Part of the dock (ui/dock.py): filling and reading the tables."""

    def _layer_combo(self, filters, allow_empty: bool = False, layer=None) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox()
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(6)
        combo.setFilters(filters)
        combo.setAllowEmptyLayer(allow_empty)
        combo.setLayer(layer)
        combo.layerChanged.connect(self._revalidate)
        return combo

    def _year_spin(self, year: Optional[int]) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 2100)
        spin.setSpecialValueText("—")
        spin.setValue(year or 0)
        spin.valueChanged.connect(self._revalidate)
        return spin

    def _bands_combo(self, bands: str = "auto") -> QComboBox:
        combo = QComboBox()
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(5)
        combo.setEditable(True)
        combo.setToolTip(self.tr("Which band holds which colour: auto (from band names, colour "
                                 "interpretation or band count), a preset, or type e.g. B=3,G=2,R=1,NIR=4"))
        combo.addItem("auto", "auto")
        for key, text in PRESET_LABELS.items():
            combo.addItem(text, key)
        index = combo.findData(bands)
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            combo.setEditText(bands)
        combo.currentTextChanged.connect(self._revalidate)
        return combo

    @staticmethod
    def _bands_value(combo: QComboBox) -> str:
        text = combo.currentText().strip()
        index = combo.findText(text)
        return combo.itemData(index) if index >= 0 else (text or "auto")

    def _append(self, table: QTableWidget, widgets: list) -> int:
        row = table.rowCount()
        table.insertRow(row)
        for col, widget in enumerate(widgets):
            table.setCellWidget(row, col, widget)
        check = QTableWidgetItem("")
        check.setFlags(Qt.ItemFlag.ItemIsEnabled)
        table.setItem(row, table.columnCount() - 1, check)
        return row

    def _remove_row(self, table: QTableWidget) -> None:
        row = table.currentRow()
        table.removeRow(row if row >= 0 else table.rowCount() - 1)
        self._revalidate()

    def add_year_row(self, year: Optional[int] = None, layer: Optional[QgsRasterLayer] = None,
                     bands: str = "auto") -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        combo = self._layer_combo(qgis_compat.LAYER_FILTER_RASTER, layer=layer)
        row = self._append(self.yearsTable, [self._year_spin(year), combo, self._bands_combo(bands)])
        if self.model_is_automatic():           # the images decide the model: show which
            self._show_model_card()
        return row

    def add_image_layers(self) -> int:
        """A row for every raster of the project not yet listed; returns how many were added."""
        listed = {layer.id() for _y, layer, _b in self.year_rows() if layer is not None}
        rasters = sorted((lay for lay in self.project.mapLayers().values()
                          if isinstance(lay, QgsRasterLayer) and lay.id() not in listed
                          and not lay.name().startswith("probability")),
                         key=lambda lay: (inputs.year_from_name(lay.name(), lay.source()) or 0, lay.name()))
        for layer in rasters:
            self.add_year_row(layer=layer)
        return len(rasters)

    def year_rows(self) -> list[tuple[int, Optional[QgsRasterLayer], str]]:
        t = self.yearsTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer(), self._bands_value(t.cellWidget(r, 2)))
                for r in range(t.rowCount())]

    def add_training_row(self, raster=None, labels=None, reviewed=None, region: str = "",
                         year: Optional[int] = None, bands: str = "auto") -> int:
        region_edit = QLineEdit(region)
        region_edit.setPlaceholderText(self.tr("region"))
        if year is None and raster is not None:
            year = inputs.year_from_name(raster.name(), raster.source())
        # a dock is narrow: the three layers stacked in one cell, region, year and bands in the next
        layers = _Stack({"raster": (self.tr("Image"), self._layer_combo(qgis_compat.LAYER_FILTER_RASTER,
                                                                         layer=raster)),
                         "labels": (self.tr("Landslides"), self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON,
                                                                              layer=labels)),
                         "reviewed": (self.tr("Reviewed"), self._layer_combo(
                             qgis_compat.LAYER_FILTER_POLYGON, allow_empty=True, layer=reviewed))})
        layers.widgets["reviewed"].setToolTip(self.tr("Reviewed-area polygons (optional): inside them, everything "
                                                      "that is not a landslide is a known negative"))
        details = _Stack({"region": ("", region_edit), "year": ("", self._year_spin(year)),
                          "bands": ("", self._bands_combo(bands))})
        details.widgets["year"].setToolTip(self.tr("Year of the image (0: none)"))
        row = self._append(self.trainingTable, [layers, details])
        self.trainingTable.setRowHeight(row, max(layers.sizeHint().height(), details.sizeHint().height()) + 4)
        return row

    def training_rows(self) -> list[dict]:
        t = self.trainingTable
        rows = []
        for r in range(t.rowCount()):
            layers, details = t.cellWidget(r, 0).widgets, t.cellWidget(r, 1).widgets
            rows.append({"raster": layers["raster"].currentLayer(), "labels": layers["labels"].currentLayer(),
                         "reviewed": layers["reviewed"].currentLayer(), "region": details["region"].text().strip(),
                         "year": details["year"].value() or None, "bands": self._bands_value(details["bands"])})
        return rows

    def add_inventory_row(self, year: Optional[int] = None, layer=None) -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        return self._append(self.inventoryTable, [self._year_spin(year),
                                                  self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON, layer=layer)])

    def add_inventory_layers(self) -> int:
        """One row per year not yet listed, from the polygon layers with a year in their name;
        a year's full inventory (``landslides <year>``) wins over its change layer."""
        listed = {year for year, _layer in self.inventory_rows()}
        found = {}
        candidates = [(inputs.year_from_name(lay.name()), lay) for lay in self.project.mapLayers().values()
                      if inputs.is_polygon_layer(lay)]
        # layer names as run_layers gives them: full inventories first, change layers last
        order = ("landslides", "", "new", "unconfirmed")
        rank = lambda name: (max(i for i, p in enumerate(order) if name.startswith(p)), name)  # noqa: E731
        for year, layer in sorted((c for c in candidates if c[0]), key=lambda c: (c[0], rank(c[1].name()))):
            if year not in listed and year not in found:
                found[year] = layer
        for year, layer in found.items():
            self.add_inventory_row(year, layer)
        return len(found)

    def inventory_rows(self) -> list[tuple[int, object]]:
        t = self.inventoryTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer()) for r in range(t.rowCount())]

    def add_reference_row(self, year: Optional[int] = None, layer=None) -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        return self._append(self.referenceTable, [self._year_spin(year),
                                                  self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON, layer=layer)])

    def reference_rows(self) -> list[tuple[int, object]]:
        t = self.referenceTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer()) for r in range(t.rowCount())]

    @property
    def project(self) -> QgsProject:
        """The layer pickers follow the current project (QGIS 3.22's combo boxes know no other)."""
        return QgsProject.instance()


class _Stack(QWidget):
    """Widgets stacked in one table cell, each with an optional label before it; ``widgets``
    holds them by key."""

    def __init__(self, items: dict, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.widgets = {key: widget for key, (_label, widget) in items.items()}
        form = QFormLayout(self)
        form.setContentsMargins(2, 1, 2, 1)
        form.setVerticalSpacing(1)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, widget in items.values():
            widget.setMinimumWidth(60)
            if label:
                form.addRow(label, widget)
            else:
                form.addRow(widget)
