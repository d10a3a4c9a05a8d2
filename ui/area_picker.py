"""Where to map: the whole images, the map view's extent, or inside a polygon layer.

The dock's Map tab holds one of these; it turns the choice into the InferenceJob's
``area``, ``bounds`` and ``bounds_crs`` (core.geodata.area reads them in the worker), and says
what is wrong with it before a run starts.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

from qgis.core import QgsCoordinateTransform, QgsCsException, QgsProject, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .. import qgis_compat
from ..qgis_io import inputs
from ..qgis_io.inputs import Problem

WHOLE, EXTENT, POLYGONS = "whole", "extent", "polygons"
FIELD = "mapArea"


class AreaPicker(QWidget):
    """Area of interest of the mapping job; ``canvas`` gives the map canvas (or None)."""

    def __init__(self, canvas: Callable[[], object], parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setObjectName("areaPicker")
        self._canvas = canvas
        self.modeCombo = QComboBox()
        self.modeCombo.setObjectName("areaModeCombo")
        for text, mode in ((self.tr("Whole images"), WHOLE), (self.tr("Current map extent"), EXTENT),
                           (self.tr("Inside polygons of a layer"), POLYGONS)):
            self.modeCombo.addItem(text, mode)
        self.modeCombo.setToolTip(self.tr("Map only part of the images: the extent of the map view when the run "
                                          "starts, or the polygons of a layer (a catchment, a study area). Only "
                                          "pixels inside are mapped and counted in the mapped area."))
        self.layerCombo = QgsMapLayerComboBox()
        self.layerCombo.setObjectName("areaLayerCombo")
        self.layerCombo.setFilters(qgis_compat.LAYER_FILTER_POLYGON)
        self.layerCombo.setAllowEmptyLayer(True)
        self.layerCombo.setLayer(None)
        self.selectedCheck = QCheckBox(self.tr("Selected features only"))
        self.selectedCheck.setObjectName("areaSelectedCheck")
        self.problemLabel = QLabel()
        self.problemLabel.setObjectName("areaProblemLabel")
        self.problemLabel.setWordWrap(True)
        self.problemLabel.setVisible(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel(self.tr("Area")))
        row.addWidget(self.modeCombo, 1)
        polygons = QHBoxLayout()
        polygons.setContentsMargins(0, 0, 0, 0)
        polygons.addWidget(self.layerCombo, 1)
        polygons.addWidget(self.selectedCheck)
        self.polygonsRow = QWidget()
        self.polygonsRow.setLayout(polygons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.polygonsRow)
        layout.addWidget(self.problemLabel)
        self.modeCombo.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()

    @property
    def mode(self) -> str:
        return self.modeCombo.currentData()

    def set_mode(self, mode: str) -> None:
        self.modeCombo.setCurrentIndex(self.modeCombo.findData(mode))

    def _mode_changed(self, *_args) -> None:
        self.polygonsRow.setVisible(self.mode == POLYGONS)

    def problems(self) -> list[Problem]:
        if self.mode == EXTENT:
            canvas = self._canvas()
            if canvas is None or canvas.extent().isEmpty():
                return [Problem(FIELD, "There is no map view to take the extent from: map the whole images or "
                                       "inside a polygon layer.")]
        if self.mode != POLYGONS:
            return []
        layer = self.layerCombo.currentLayer()
        if layer is None:
            return [Problem(FIELD, "Choose the polygon layer to map inside (or map the whole images).")]
        # an empty layer leaves nothing to map; its CRS only needs to be valid (it is reprojected)
        problems = [p for p in inputs.check_polygons(layer, "Area layer", FIELD) if p.severity == inputs.ERROR]
        if not problems and not layer.featureCount():
            problems.append(Problem(FIELD, f"Area layer ({layer.name()}) has no polygons: draw the area, or map "
                                           "the whole images."))
        if self.selectedCheck.isChecked() and not layer.selectedFeatureCount():
            problems.append(Problem(FIELD, f"No feature of {layer.name()} is selected: select the area's polygons, "
                                           "or untick 'Selected features only'."))
        return problems

    def extent_in(self, crs) -> Optional[QgsRectangle]:
        """The chosen area's bounding rectangle in ``crs`` (None: the whole images)."""
        if self.mode == EXTENT and self._canvas() is not None:
            canvas = self._canvas()
            source, rect = canvas.mapSettings().destinationCrs(), canvas.extent()
        elif self.mode == POLYGONS and self.layerCombo.currentLayer() is not None:
            layer = self.layerCombo.currentLayer()
            source = layer.crs()
            rect = layer.boundingBoxOfSelected() if self.selectedCheck.isChecked() else layer.extent()
        else:
            return None
        if source.isValid() and crs.isValid() and source != crs:
            try:
                rect = QgsCoordinateTransform(source, crs, QgsProject.instance()).transformBoundingBox(rect)
            except QgsCsException:
                return None
        return rect

    def job_fields(self, snapshot_dir: Optional[Path] = None) -> dict:
        """The InferenceJob's area fields for the current choice (call after ``problems``)."""
        if self.mode == EXTENT:
            canvas = self._canvas()
            rect = canvas.extent()
            crs = canvas.mapSettings().destinationCrs()
            return {"bounds": [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()],
                    "bounds_crs": crs.toWkt() if crs.isValid() else None}
        if self.mode == POLYGONS:
            layer: QgsVectorLayer = self.layerCombo.currentLayer()
            snapshot_dir = snapshot_dir or Path(tempfile.gettempdir()) / "landslide_mapper_inputs"
            path, name = inputs.vector_source(layer, snapshot_dir, selected=self.selectedCheck.isChecked())
            return {"area": f"{path}|layername={name}" if name else path}
        return {}
