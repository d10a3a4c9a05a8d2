"""Putting a finished run on the map: a layer group per run, a subgroup per year.

Called on the main thread only (from a task's ``finished()``). Layers are opened from
the run's GeoPackage, so they are ordinary editable layers: correcting a prediction is
editing ``landslides_<year>`` in place, and a later run writes a new folder instead of
touching it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorRampShader, QgsFillSymbol, QgsLayerTreeGroup,
                       QgsPalLayerSettings, QgsProject, QgsRasterLayer, QgsRasterShader, QgsRendererCategory,
                       QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer, QgsTextFormat, QgsVectorLayer,
                       QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor

from .. import qgis_compat
from ..core import palette
from ..core.names import NO_CHANGE, NOT_OBSERVED, changes_layer, unconfirmed_layer

FILL_ALPHA = 60       # light fills: the scar in the image stays visible under its polygon
STYLE_NAME = "Landslide Mapper"


def year_colour(year: int) -> QColor:
    """The year's colour: the same in the layers panel, the map and the charts (core.palette)."""
    return QColor(palette.year_colour(year))


def _fill(colour: QColor, alpha: int = FILL_ALPHA, brush: str = "solid", outline: str = "solid") -> QgsFillSymbol:
    """A light fill (or hatching) with an opaque outline of the same colour."""
    rgb = f"{colour.red()},{colour.green()},{colour.blue()}"
    return QgsFillSymbol.createSimple({"color": f"{rgb},{255 if brush != 'solid' else alpha}", "style": brush,
                                       "outline_color": f"{rgb},255", "outline_width": "0.5",
                                       "outline_style": outline})


def style_landslides(layer: QgsVectorLayer, year: int) -> None:
    layer.setRenderer(QgsSingleSymbolRenderer(_fill(year_colour(year))))


# new and enlarged parts: the year's colour, told apart by the fill (solid vs hatched)
CHANGE_STYLES = {"new": dict(brush="solid", alpha=110), "enlarged": dict(brush="b_diagonal", outline="dash")}


def style_changes(layer: QgsVectorLayer, year: int) -> None:
    """New parts filled, enlarged parts hatched, both in the year's colour (on ``change``)."""
    colour = year_colour(year)
    categories = [QgsRendererCategory(value, _fill(colour, **style), value) for value, style in CHANGE_STYLES.items()]
    layer.setRenderer(QgsCategorizedSymbolRenderer("change", categories))


# parts the images do not support: hollow, grey when no change was seen, blue when the
# ground had no data the year before (on ``evidence``)
UNCONFIRMED_STYLES = {NO_CHANGE: "#636363", NOT_OBSERVED: "#3182bd"}


def style_unconfirmed(layer: QgsVectorLayer) -> None:
    categories = [QgsRendererCategory(value, QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": colour, "outline_width": "0.5", "outline_style": "dot"}), value)
        for value, colour in UNCONFIRMED_STYLES.items()]
    layer.setRenderer(QgsCategorizedSymbolRenderer("evidence", categories))


def save_default_style(layer) -> None:
    """Store the layer's style with its data, as QGIS' *Save as default* does: in the
    GeoPackage's ``layer_styles`` table for a GeoPackage layer, in a ``.qml`` file beside
    a raster. The GeoPackage opened later, or by a colleague, then looks the same."""
    source = layer.source().split("|", 1)[0]
    if isinstance(layer, QgsVectorLayer) and source.lower().endswith(".gpkg"):
        layer.saveStyleToDatabase(STYLE_NAME, "", True, "")
    elif isinstance(layer, QgsRasterLayer) and Path(source).is_file():
        layer.saveNamedStyle(str(Path(source).with_suffix(".qml")))


def _pseudocolour(layer: QgsRasterLayer, stops: list[tuple[float, QColor, str]]) -> None:
    """A single-band ramp interpolated between ``stops`` (value, colour, label)."""
    lo, hi = stops[0][0], stops[-1][0]
    ramp = QgsColorRampShader(lo, hi)
    ramp.setColorRampType(qgis_compat.SHADER_LINEAR)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, c, label) for v, c, label in stops])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    layer.setRenderer(renderer)


def style_probability(layer: QgsRasterLayer) -> None:
    """0 → transparent, 1 → dark red; nodata (−1) stays transparent."""
    _pseudocolour(layer, [(0.0, QColor(255, 255, 204, 0), "0"), (0.5, QColor(253, 141, 60, 160), "0.5"),
                          (1.0, QColor(128, 0, 38, 230), "1")])


def style_uncertainty(layer: QgsRasterLayer) -> None:
    """Uncertainty (uint8, 0-254 for 0-1): transparent where sure, purple near the threshold;
    255 (nodata) stays transparent."""
    _pseudocolour(layer, [(0.0, QColor(255, 255, 255, 0), "sure"), (127.0, QColor(197, 27, 138, 110), "0.5"),
                          (254.0, QColor(73, 0, 106, 220), "unsure")])


def style_review(layer: QgsVectorLayer) -> None:
    """Suggested review areas: hollow squares labelled with their rank."""
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "0,191,255,255", "outline_width": "0.8",
         "outline_style": "dash"})))
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    fmt = QgsTextFormat()
    fmt.setColor(QColor(0, 191, 255))
    fmt.setSize(11)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def run_group_name(run_dir) -> str:
    """The layer group of a run, whether the dock or a Processing algorithm loads it."""
    return f"Landslide Mapper — {Path(run_dir).name}"


@dataclass
class LayerSpec:
    """One layer of a mapping run, as both the dock and Processing load it."""

    output: str            # the Processing output it belongs to (LANDSLIDES, CHANGES, ...)
    year: int
    uri: str
    name: str
    raster: bool
    style: Callable
    newest: bool           # of the newest year (the one shown when loaded)
    rank: int              # place within its year, 0 on top
    hidden: bool = False   # unticked even when its year is shown (rasters, unconfirmed parts)

    @property
    def visible(self) -> bool:
        """Ticked when loaded: the newest year's layers that are not hidden."""
        return self.newest and not self.hidden


RANKS = 5                  # the highest rank a layer of a year can have


def run_layer_specs(result: dict) -> list[LayerSpec]:
    """The layers of a mapping run (the worker's result dict), newest year first and each
    year top to bottom: suggested review areas, new or enlarged landslides, the (unticked)
    new parts the images do not support, landslides, and the (unticked) uncertainty and
    probability rasters."""
    run_dir, gpkg = Path(result["run_dir"]), result["geopackage"]
    years = sorted(result.get("years", []), key=lambda y: y["year"], reverse=True)
    newest = years[0]["year"] if years else None
    changed = {c["year"] for c in result.get("changes", [])}
    unconfirmed = {c["year"] for c in result.get("changes", []) if c.get("unconfirmed_parts")}
    specs = []
    for y in years:
        year, top = y["year"], y["year"] == newest
        if y.get("review_layer"):
            specs.append(LayerSpec("REVIEW", year, f"{gpkg}|layername={y['review_layer']}", f"review areas {year}",
                                   False, style_review, top, 0))
        if year in changed:
            specs.append(LayerSpec("CHANGES", year, f"{gpkg}|layername={changes_layer(year)}",
                                   f"new or enlarged {year}", False, lambda layer, y=year: style_changes(layer, y),
                                   top, 1))
        if year in unconfirmed:
            specs.append(LayerSpec("UNCONFIRMED", year, f"{gpkg}|layername={unconfirmed_layer(year)}",
                                   f"unconfirmed new {year}", False, style_unconfirmed, top, 2, hidden=True))
        specs.append(LayerSpec("LANDSLIDES", year, f"{gpkg}|layername={y['layer']}", f"landslides {year}", False,
                               lambda layer, y=year: style_landslides(layer, y), top, 3))
        if y.get("uncertainty"):
            specs.append(LayerSpec("UNCERTAINTY_LAYERS", year, str(run_dir / y["uncertainty"]),
                                   f"uncertainty {year}", True, style_uncertainty, top, 4, hidden=True))
        specs.append(LayerSpec("PROBABILITY", year, str(run_dir / y["probability"]), f"probability {year}", True,
                               style_probability, top, RANKS, hidden=True))
    return specs


def add_run_to_project(result: dict, project: QgsProject | None = None,
                       title: str | None = None) -> QgsLayerTreeGroup:
    """Add a mapping run (the worker's result dict) as a group: one subgroup per year, only
    the newest one ticked, holding the layers of :func:`run_layer_specs`."""
    project = project or QgsProject.instance()
    group = project.layerTreeRoot().insertGroup(0, title or run_group_name(Path(result["run_dir"])))
    subgroups: dict[int, QgsLayerTreeGroup] = {}
    for spec in run_layer_specs(result):
        if spec.year not in subgroups:
            subgroups[spec.year] = group.addGroup(str(spec.year))
            subgroups[spec.year].setItemVisibilityChecked(not len(subgroups) - 1)
        layer = QgsRasterLayer(spec.uri, spec.name) if spec.raster else QgsVectorLayer(spec.uri, spec.name, "ogr")
        node = _add_layer(project, subgroups[spec.year], layer, spec.style)
        if node is not None and spec.hidden:
            node.setItemVisibilityChecked(False)
    return group


STATUS_COLOURS = {"matched": QColor("#1a9641"), "false_alarm": QColor("#d7191c"), "missed": QColor("#fdae61"),
                  "outside_area": QColor("#bababa"), "dropped": QColor("#7b3294")}
STATUS_LABELS = {"matched": "matched", "false_alarm": "false alarm", "missed": "missed",
                 "outside_area": "outside the assessment area", "dropped": "dropped (invalid)"}


def style_status(layer: QgsVectorLayer) -> None:
    """Assessment layers coloured by the ``status`` of each polygon."""
    categories = [QgsRendererCategory(value, _fill(colour, 130), STATUS_LABELS[value])
                  for value, colour in STATUS_COLOURS.items()]
    layer.setRenderer(QgsCategorizedSymbolRenderer("status", categories))


def _add_layer(project: QgsProject, group: QgsLayerTreeGroup, layer, style=None):
    """Style ``layer``, store the style with its data, add it to ``group``; None if invalid."""
    if not layer.isValid():
        return None
    if style is not None:
        style(layer)
        save_default_style(layer)
    project.addMapLayer(layer, False)
    return group.addLayer(layer)


def _run_group(result: dict, project: QgsProject | None):
    """The project, the run's GeoPackage and a new top group named after the run folder."""
    project = project or QgsProject.instance()
    group = project.layerTreeRoot().insertGroup(0, run_group_name(result["run_dir"]))
    return project, result["geopackage"], group


def add_changes_to_project(result: dict, project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """A subtraction run: its ``new_<year>`` layers, newest year on top."""
    project, gpkg, group = _run_group(result, project)
    for change in sorted(result.get("changes", []), key=lambda c: c["year"], reverse=True):
        year = change["year"]
        _add_layer(project, group, QgsVectorLayer(f"{gpkg}|layername={changes_layer(year)}",
                                                  f"new or enlarged {year}", "ogr"),
                   lambda layer, year=year: style_changes(layer, year))
    return group


def add_assessment_to_project(result: dict, project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """An accuracy run: per year, predicted and reference polygons coloured by match status."""
    project, gpkg, group = _run_group(result, project)
    for row in sorted(result.get("rows", []), key=lambda r: r["year"], reverse=True):
        year = row["year"]
        sub = group.addGroup(f"{year} (F1 {row.get('f1')})")
        for side in ("predicted", "reference"):
            _add_layer(project, sub, QgsVectorLayer(f"{gpkg}|layername={side}_{year}", f"{side} {year}", "ogr"),
                       style_status)
    return group
