"""Putting a finished run on the map: a layer group per run, a subgroup per year.

Called on the main thread only (from a task's ``finished()``). Layers are opened from
the run's GeoPackage, so they are ordinary editable layers: correcting a prediction is
editing ``landslides_<year>`` in place, and a later run writes a new folder instead of
touching it.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorRampShader, QgsFillSymbol, QgsLayerTreeGroup,
                       QgsPalLayerSettings, QgsProject, QgsRasterLayer, QgsRasterShader, QgsRendererCategory,
                       QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer, QgsTextFormat, QgsVectorLayer,
                       QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor

from .. import qgis_compat

# a sequential palette, early years light, late years dark (YlOrRd-like)
_YEAR_RAMP = [QColor("#fed976"), QColor("#fd8d3c"), QColor("#e31a1c"), QColor("#800026")]
CHANGE_COLOURS = {"new": QColor("#d7191c"), "enlarged": QColor("#2c7bb6")}


def year_colour(index: int, count: int) -> QColor:
    """Colour of the ``index``-th of ``count`` years along the sequential palette."""
    if count <= 1:
        return QColor(_YEAR_RAMP[-2])
    t = index / (count - 1) * (len(_YEAR_RAMP) - 1)
    i = min(int(t), len(_YEAR_RAMP) - 2)
    f = t - i
    a, b = _YEAR_RAMP[i], _YEAR_RAMP[i + 1]
    return QColor(round(a.red() + f * (b.red() - a.red())), round(a.green() + f * (b.green() - a.green())),
                  round(a.blue() + f * (b.blue() - a.blue())))


def _fill(colour: QColor, alpha: int) -> QgsFillSymbol:
    """A translucent fill with an opaque outline of the same colour."""
    rgb = f"{colour.red()},{colour.green()},{colour.blue()}"
    return QgsFillSymbol.createSimple({"color": f"{rgb},{alpha}", "outline_color": f"{rgb},255",
                                       "outline_width": "0.4"})


def style_landslides(layer: QgsVectorLayer, colour: QColor) -> None:
    layer.renderer().setSymbol(_fill(colour, 110))


def style_changes(layer: QgsVectorLayer) -> None:
    """New and enlarged parts in two distinct colours (categorised on ``change``)."""
    categories = [QgsRendererCategory(value, _fill(colour, 150), value)
                  for value, colour in CHANGE_COLOURS.items()]
    layer.setRenderer(QgsCategorizedSymbolRenderer("change", categories))


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


def add_run_to_project(result: dict, project: QgsProject | None = None,
                       title: str | None = None) -> QgsLayerTreeGroup:
    """Add a mapping run (the worker's result dict) as a group: one subgroup per year
    holding its suggested review areas, its new/enlarged parts, its landslides and its
    (hidden) uncertainty and probability rasters."""
    project = project or QgsProject.instance()
    run_dir = Path(result["run_dir"])
    gpkg = Path(result["geopackage"])
    root = project.layerTreeRoot()
    group = root.insertGroup(0, title or run_group_name(run_dir))
    years = result.get("years", [])
    for i, y in enumerate(sorted(years, key=lambda y: y["year"], reverse=True)):
        year = y["year"]
        sub = group.addGroup(str(year))
        colour = year_colour(len(years) - 1 - i, len(years))
        if y.get("review_layer"):
            _add_layer(project, sub, QgsVectorLayer(f"{gpkg}|layername={y['review_layer']}",
                                                    f"review areas {year}", "ogr"), style_review)
        new = QgsVectorLayer(f"{gpkg}|layername=new_{year}", f"new or enlarged {year}", "ogr")
        if new.isValid():
            style_changes(new)
            project.addMapLayer(new, False)
            sub.addLayer(new)
        lay = QgsVectorLayer(f"{gpkg}|layername={y['layer']}", f"landslides {year}", "ogr")
        if lay.isValid():
            style_landslides(lay, colour)
            project.addMapLayer(lay, False)
            sub.addLayer(lay)
        if y.get("uncertainty"):
            node = _add_layer(project, sub, QgsRasterLayer(str(run_dir / y["uncertainty"]), f"uncertainty {year}"),
                              style_uncertainty)
            if node is not None:
                node.setItemVisibilityChecked(False)
        prob = QgsRasterLayer(str(run_dir / y["probability"]), f"probability {year}")
        if prob.isValid():
            style_probability(prob)
            project.addMapLayer(prob, False)
            sub.addLayer(prob).setItemVisibilityChecked(False)
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
    if not layer.isValid():
        return None
    if style is not None:
        style(layer)
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
        _add_layer(project, group, QgsVectorLayer(f"{gpkg}|layername=new_{year}",
                                                  f"new or enlarged {year}", "ogr"), style_changes)
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
