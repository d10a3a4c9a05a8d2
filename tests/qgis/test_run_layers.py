"""A finished mapping run lands on the map as styled, editable layers (real QgsProject)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from qgis.core import QgsCategorizedSymbolRenderer, QgsProject, QgsSingleBandPseudoColorRenderer, QgsVectorLayer

from conftest import ROOT, forest_with_scars, write_raster
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.palette import label_colours
from landslide_mapper.qgis_io.run_layers import add_run_to_project, year_colour


_KEEP_ALIVE: list = []


@pytest.fixture
def project(qgis_app):
    """A project of its own, emptied afterwards and never garbage-collected (dropping a
    QgsProject while Python wrappers still point at its layer-tree nodes crashes)."""
    project = QgsProject()
    _KEEP_ALIVE.append(project)
    yield project
    project.layerTreeRoot().removeAllChildren()
    project.removeAllMapLayers()


def test_a_run_becomes_a_group_with_a_subgroup_per_year(project, tmp_path):
    first = forest_with_scars(120, 150, scars=[(10, 50, 10, 60)])
    first[:, 60:90, 10:60] = 0                    # no data in 2017 where a scar shows in 2018
    a = write_raster(tmp_path / "a.tif", first)
    b = write_raster(tmp_path / "b.tif", forest_with_scars(120, 150, scars=[(10, 50, 10, 60), (80, 110, 90, 140),
                                                                            (65, 85, 20, 50)]))
    result = run_inference(InferenceJob(years=[YearInput(2017, str(a)), YearInput(2018, str(b))],
                                        model=str(ROOT / "models/spectral_baseline.onnx"),
                                        output_dir=str(tmp_path / "out"), tile_size=64, run_name="r1"))
    group = add_run_to_project(result.to_dict(), project)
    assert group.name() == "Landslide Mapper — r1"
    assert [g.name() for g in group.children()] == ["2018", "2017"]        # newest on top
    y2018 = group.children()[0]
    names = [node.layer().name() for node in y2018.findLayers()]
    assert names == ["new or enlarged 2018", "unconfirmed new 2018", "landslides 2018", "probability 2018"]
    new, unconfirmed, landslides, prob = (node.layer() for node in y2018.findLayers())
    assert new.featureCount() == 1 and landslides.featureCount() == 3
    # the scar on ground 2017 did not see is set aside, unticked, drawn hollow by its evidence
    assert [f["evidence"] for f in unconfirmed.getFeatures()] == ["not observed before"]
    assert not y2018.findLayers()[1].itemVisibilityChecked()
    assert {c.value() for c in unconfirmed.renderer().categories()} == {"no change seen", "not observed before"}
    assert isinstance(new.renderer(), QgsCategorizedSymbolRenderer)
    assert {c.value() for c in new.renderer().categories()} == {"new", "enlarged"}
    assert isinstance(prob.renderer(), QgsSingleBandPseudoColorRenderer)
    assert not y2018.findLayers()[3].itemVisibilityChecked()               # probability hidden
    # the first year has no T-1: no change layer
    assert [n.layer().name() for n in group.children()[1].findLayers()] == ["landslides 2017", "probability 2017"]
    # the layers are the GeoPackage's own, so corrections are ordinary edits
    assert landslides.isEditable() is False and landslides.startEditing()
    landslides.rollBack()
    # one colour per year, the charts' too; new vs enlarged told apart by the fill
    assert year_colour(2017) != year_colour(2018)
    assert landslides.renderer().symbol().color().name() == year_colour(2018).name()
    categories = new.renderer().categories()          # kept: the symbol layers belong to them
    fills = {c.value(): (c.symbol().symbolLayer(0).strokeColor().name(), c.symbol().symbolLayer(0).brushStyle())
             for c in categories}
    assert {stroke for stroke, _ in fills.values()} == {year_colour(2018).name()}
    assert fills["new"][1] != fills["enlarged"][1]
    assert landslides.renderer().symbol().color().alpha() < 100               # light: the scar stays visible
    assert label_colours(["2017", "new 2018"]) == [year_colour(2017).name(), year_colour(2018).name()]
    # only the newest year is ticked
    assert [g.itemVisibilityChecked() for g in group.children()] == [True, False]
    # the styles travel with the data: the GeoPackage opened afresh looks the same
    gpkg = result.to_dict()["geopackage"]
    with sqlite3.connect(gpkg) as db:
        styled = {row[0] for row in db.execute("SELECT f_table_name FROM layer_styles WHERE useAsDefault")}
    assert {"landslides_2018", "new_2018"} <= styled
    again = QgsVectorLayer(f"{gpkg}|layername=new_2018", "again", "ogr")
    assert isinstance(again.renderer(), QgsCategorizedSymbolRenderer)
    assert (Path(prob.source()).with_suffix(".qml")).is_file()
