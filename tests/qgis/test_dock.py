"""The dock lists the project's layers and models, checks inputs next to their fields, and
turns the form into the job specs the worker runs (real QgsApplication, real layers)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import box

from conftest import ROOT, forest_with_scars, write_raster
from landslide_mapper.core.mapping.bundled import AUTO, CASCADE_CHECKPOINT, RGB_CHECKPOINT
from landslide_mapper.core.jobs.specs import (DISTILL_WEIGHT, AnalyseJob, AssessJob, InferenceJob, SubtractJob,
                                                 TrainJob)
from landslide_mapper.core.geodata.vector_io import VectorLayer, read_layer, write_geopackage
from landslide_mapper.ui.dock import LandslideMapperDock
from landslide_mapper.qgis_io.inputs import year_from_name

BUNDLED = CASCADE_CHECKPOINT


@pytest.fixture
def project(qgis_app):
    """The layers a test adds to the project, removed afterwards."""
    project = QgsProject.instance()
    added: list[str] = []

    def add(layer):
        assert layer.isValid(), layer.source()
        project.addMapLayer(layer)
        added.append(layer.id())
        return layer

    yield add
    project.removeMapLayers([i for i in added if project.mapLayer(i) is not None])


@pytest.fixture
def dock(qgis_app, tmp_path):
    dock = LandslideMapperDock(ROOT / "models")
    dock.checkpointFolderWidget.setFilePath(str(tmp_path / "checkpoints"))
    dock.outputFolderWidget.setFilePath(str(tmp_path / "runs"))
    yield dock
    dock.close()
    dock.deleteLater()


def polygons_gpkg(path, geoms, layer: str = "landslides"):
    write_geopackage(path, {layer: VectorLayer(np.array(geoms, dtype=object), {}, CRS.from_epsg(32645).to_wkt())})
    return path


def raster(tmp_path, name, bands=4, crs="EPSG:32645", transform=None):
    data = forest_with_scars(64, 64, scars=[(10, 30, 10, 30)])[:bands]
    return QgsRasterLayer(str(write_raster(tmp_path / f"{name}.tif", data, crs=crs, transform=transform)), name)


def test_year_is_read_from_layer_and_file_names():
    assert year_from_name("scene_2017") == 2017
    assert year_from_name("PS_20170512_ortho", "/d/x.tif") is None     # a date is not a year
    assert year_from_name("landslides", "/data/planet_2019.tif") == 2019
    assert year_from_name("band 4") is None


def test_dock_lists_project_layers_and_models(dock, project, tmp_path):
    r17 = project(raster(tmp_path, "scene_2017"))
    r18 = project(raster(tmp_path, "scene_2018"))
    poly = project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "inv.gpkg", [box(0, 0, 30, 30)])), "inventory_2018"))
    assert dock.add_image_layers() == 2
    assert dock.year_rows() == [(2017, r17, "auto"), (2018, r18, "auto")]
    assert dock.add_image_layers() == 0                                   # listed once
    combo = dock.yearsTable.cellWidget(0, 1)
    names = {combo.itemText(i) for i in range(combo.count())}
    assert {"scene_2017", "scene_2018"} <= {n.split(" [")[0] for n in names}
    assert not any(n.startswith("inventory_2018") for n in names)          # rasters only
    project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "new.gpkg", [box(0, 0, 9, 9)])), "new or enlarged 2018"))
    assert dock.add_inventory_layers() == 1 and dock.inventory_rows() == [(2018, poly)]   # one per year
    assert dock.add_inventory_layers() == 0
    # automatic is preselected: for these 4-band images the bundled cascade, shown with its card
    assert dock.checkpointCombo.currentData() == AUTO and dock.model_is_automatic()
    entry = dock.selected_model()
    assert entry.path == BUNDLED and entry.is_checkpoint and len(entry.stages) >= 5
    assert dock.baseCheckpointCombo.currentData() == str(BUNDLED)
    dock._show_model_card()
    card = dock.modelCardView.toPlainText()
    assert "Lineage" in card and "adsms_unet" in card
    assert f"Automatic: for the images listed now this is {BUNDLED.name}" in card
    plain = [e for e in dock.model_entries() if not e.is_checkpoint]
    assert [e.path.name for e in plain] == ["spectral_baseline.onnx"]
    assert dock.baseCheckpointCombo.findData(str(plain[0].path)) == -1      # ONNX cannot be fine-tuned


def test_map_inputs_are_checked_next_to_their_fields(dock, project, tmp_path):
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append((job, title)))
    good = project(raster(tmp_path, "scene_2017"))
    three = project(raster(tmp_path, "rgb_2018", bands=3))
    geo = project(raster(tmp_path, "geo_2019", crs="EPSG:4326", transform=from_origin(85.3, 28.0, 3e-5, 3e-5)))
    dock.checkpointCombo.setCurrentIndex(dock.checkpointCombo.findData(str(BUNDLED)))   # the 4-band cascade
    dock.add_year_row(2017, good)
    dock.add_year_row(2017, three)                  # duplicate year, too few bands
    dock.add_year_row(None, geo)                    # year from the name; geographic: a warning
    dock.add_year_row(0, good)                      # missing year
    dock.runMapButton.click()
    assert jobs == []
    assert dock.row_check(dock.yearsTable, 0) == "OK"
    assert "already given in row 1" in dock.row_check(dock.yearsTable, 1)
    problems = {p.message for p in dock.problems() if p.field.startswith("years[1]")}
    assert any("the band mapping has no NIR" in m and RGB_CHECKPOINT.name in m for m in problems)
    assert "geographic CRS (EPSG:4326)" in dock.row_check(dock.yearsTable, 2)
    assert "UTM zone" in dock.row_check(dock.yearsTable, 2)
    assert "enter the year" in dock.row_check(dock.yearsTable, 3)
    assert "fix the marked inputs" in dock.mapStatusLabel.text()
    # fixing the rows: the warning stays, the job goes out
    dock.yearsTable.cellWidget(1, 0).setValue(2018)
    dock.yearsTable.cellWidget(1, 2).setEditText("B=3,G=2,R=1,NIR=1")
    dock.yearsTable.removeRow(3)
    assert dock.row_check(dock.yearsTable, 1) == "OK"                    # re-checked while editing
    dock.runMapButton.click()
    assert len(jobs) == 1
    job, title = jobs[0]
    assert isinstance(job, InferenceJob) and title == "Landslide Mapper: mapping 2017–2019"
    assert [(y.year, y.path, y.bands) for y in job.years] == [
        (2017, good.source(), "auto"), (2018, three.source(), "B=3,G=2,R=1,NIR=1"), (2019, geo.source(), "auto")]
    assert job.model == str(BUNDLED) and job.output_dir == str(tmp_path / "runs")
    assert job.tile_size is None and job.threshold is None and job.device == "auto"
    job.validate()


def test_missing_checkpoint_and_unwritable_output_are_reported(dock, project, tmp_path):
    dock._models_dir = tmp_path / "none"
    dock.refresh_models()
    assert dock.selected_model() is None and "No checkpoint found" in dock.modelCardView.toPlainText()
    (tmp_path / "file").write_text("x")
    dock.outputFolderWidget.setFilePath(str(tmp_path / "file" / "runs"))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    assert dock.map_job() is None
    assert "Choose a checkpoint" in dock.checkpointProblemLabel.text()
    assert "is not a folder" in dock.outputProblemLabel.text()
    assert not dock.add_model(tmp_path / "file")
    assert "neither a cascade checkpoint folder nor an .onnx model" in dock.checkpointProblemLabel.text()
    assert dock.map_job() is None                       # checking the form again keeps the message
    assert "neither a cascade checkpoint folder nor an .onnx model" in dock.checkpointProblemLabel.text()
    assert dock.add_model(ROOT / "models" / "spectral_baseline.onnx")   # a plain .onnx file
    assert dock.selected_model().path.name == "spectral_baseline.onnx"
    assert "neither" not in dock.checkpointProblemLabel.text()
    assert dock.add_model(CASCADE_CHECKPOINT / "checkpoint.json")        # a checkpoint's file: its folder
    assert dock.selected_model().path == CASCADE_CHECKPOINT


def test_fine_tune_job_from_edited_and_digitised_layers(dock, project, tmp_path):
    img = project(raster(tmp_path, "scene_2017"))
    gpkg = polygons_gpkg(tmp_path / "pred.gpkg", [box(300030, 3099910, 300060, 3099940)])
    predicted = project(QgsVectorLayer(str(gpkg), "landslides_2017"))
    digitised = project(QgsVectorLayer("Polygon?crs=EPSG:32645", "reviewed area", "memory"))
    digitised.startEditing()
    from qgis.core import QgsFeature, QgsGeometry
    feature = QgsFeature(digitised.fields())
    feature.setGeometry(QgsGeometry.fromWkt(box(300000, 3099808, 300192, 3100000).wkt))
    digitised.addFeature(feature)
    dock.add_training_row(img, predicted, digitised, region="Test valley")
    dock.runTrainButton.click()
    checks = dock.row_check(dock.trainingTable, 0)
    assert "unsaved edits" in checks and "Give the new checkpoint a name" in dock.newNameProblemLabel.text()
    digitised.commitChanges()
    predicted.startEditing()
    predicted.deleteFeature(next(predicted.getFeatures()).id())
    predicted.addFeature(feature)                                        # a corrected polygon
    predicted.commitChanges()
    dock.newNameEdit.setText("cascade_test_valley")
    dock.epochsSpin.setValue(3)
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.runTrainButton.click()
    assert len(jobs) == 1, [p.message for p in dock.problems()]
    job = jobs[0]
    assert isinstance(job, TrainJob) and job.base_checkpoint == str(BUNDLED) and job.epochs == 3
    source = job.sources[0]
    assert source.raster == img.source() and source.region == "Test valley" and source.year == 2017
    assert source.labels == str(gpkg)                                   # the GeoPackage itself
    # the memory layer was copied to a GeoPackage the worker can read
    assert source.reviewed.endswith(".gpkg") and len(read_layer(source.reviewed, source.reviewed_layer).geometries) == 1
    assert job.output_dir == str(tmp_path / "checkpoints") and job.loss is None
    # the option to keep the base's mapping where nobody reviewed starts as the job's default
    assert dock.keepBaseCheck.isChecked() == (TrainJob.distill_weight > 0)
    assert job.distill_weight == (DISTILL_WEIGHT if dock.keepBaseCheck.isChecked() else 0.0)
    dock.keepBaseCheck.setChecked(not dock.keepBaseCheck.isChecked())
    dock.runTrainButton.click()
    assert jobs[-1].distill_weight == (DISTILL_WEIGHT if dock.keepBaseCheck.isChecked() else 0.0)
    job.validate()


def test_geographic_training_image_is_refused(dock, project, tmp_path):
    geo = project(raster(tmp_path, "geo_2019", crs="EPSG:4326", transform=from_origin(85.3, 28.0, 3e-5, 3e-5)))
    labels = project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "l.gpkg", [box(0, 0, 1, 1)])), "labels"))
    dock.add_training_row(geo, labels)
    dock.newNameEdit.setText("x")
    assert dock.train_job() is None
    assert "reproject it to a projected CRS" in dock.row_check(dock.trainingTable, 0)


def test_analysis_jobs_from_polygon_layers(dock, project, tmp_path):
    a = project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "a.gpkg", [box(0, 0, 30, 30)])), "inv_2017"))
    b = project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "b.gpkg", [box(0, 0, 60, 30)])), "inv_2018"))
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_inventory_row(2017, a)
    dock.runSubtractButton.click()
    assert jobs == [] and "needs at least 2 years" in dock.inventoryProblemLabel.text()
    dock.add_inventory_row(None, b)
    dock.runSubtractButton.click()
    dock.mappedAreaSpin.setValue(2.5)
    dock.runFadButton.click()
    dock.runAssessButton.click()
    assert "Add at least one year" in dock.referenceProblemLabel.text()
    dock.add_reference_row(2018, a)
    dock.runAssessButton.click()
    assert [type(j) for j in jobs] == [SubtractJob, AnalyseJob, AssessJob]
    sub, fad, assess = jobs
    assert [(y.year, y.path) for y in sub.years] == [(2017, a.source().split("|")[0]), (2018, b.source().split("|")[0])]
    assert fad.mapped_area_km2 == 2.5
    assert [r.year for r in assess.reference] == [2018]
    for job in jobs:
        job.validate()
    assert json.loads(json.dumps(sub.to_dict()))["kind"] == "subtract"
    assert np.isclose(sub.pixel_size_m, 3.0)


def test_automatic_model_picks_the_rgb_checkpoint_for_colour_only_layers(dock, project, tmp_path):
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    dock.add_year_row(2018, project(raster(tmp_path, "rgb_2018", bands=3)))
    assert dock.model_is_automatic() and dock.selected_model().path == RGB_CHECKPOINT
    dock._show_model_card()
    assert f"this is {RGB_CHECKPOINT.name}" in dock.modelCardView.toPlainText()
    dock.runMapButton.click()
    assert dock.row_check(dock.yearsTable, 1) == "OK" and len(jobs) == 1
    assert jobs[0].model == AUTO
    jobs[0].validate()


def test_a_checkpoint_not_better_than_its_base_is_never_preselected(dock, tmp_path):
    """The newest stage is offered as the base of the next fine-tune only if it was better."""
    import shutil

    folder = tmp_path / "checkpoints"
    for name, improved in (("worse", False), ("better", True)):
        copy = folder / name
        shutil.copytree(BUNDLED, copy)
        info = json.loads((copy / "checkpoint.json").read_text())
        extra = [dict(info["lineage"][-1], stage=len(info["lineage"]) + 1, improved=improved)]
        if name == "worse":      # the newest of all: one stage more
            extra.append(dict(extra[0], stage=len(info["lineage"]) + 2))
        info["lineage"] += extra
        info["name"], info["id"] = name, f"{name}00000000"[:12]
        (copy / "checkpoint.json").write_text(json.dumps(info))
    dock.baseCheckpointCombo.setCurrentIndex(-1)          # nothing chosen yet: the dock proposes one
    dock.refresh_models()
    assert dock.baseCheckpointCombo.currentData() == str(folder / "better")
    assert dock.baseCheckpointCombo.findData(str(folder / "worse")) >= 0          # still listed


def test_mapping_options_reach_the_job(dock, project, tmp_path):
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    assert not dock.uncertaintyCheck.isChecked() and not dock.ttaCheck.isChecked() and dock.resampleCheck.isChecked()
    assert dock.confirmChangesCheck.isChecked() == InferenceJob.confirm_changes
    dock.uncertaintyCheck.setChecked(True)
    dock.ttaCheck.setChecked(True)
    dock.resampleCheck.setChecked(False)
    dock.confirmChangesCheck.setChecked(False)
    dock.runMapButton.click()
    assert len(jobs) == 1 and jobs[0].uncertainty and jobs[0].tta and jobs[0].resample == "off"
    assert jobs[0].confirm_changes is False
    jobs[0].validate()


def test_a_nodata_value_from_the_options_reaches_every_year(dock, project, tmp_path):
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    dock.add_year_row(2018, project(raster(tmp_path, "scene_2018")))
    dock.runMapButton.click()
    assert [y.nodata for y in jobs[-1].years] == [None, None]          # empty: the images' own
    dock.nodataEdit.setText("0")
    dock.runMapButton.click()
    assert [y.nodata for y in jobs[-1].years] == [0.0, 0.0]
    dock.nodataEdit.setText("black")
    dock.runMapButton.click()
    assert len(jobs) == 2 and "nodata value" in dock.mapStatusLabel.text() and "black" in dock.mapStatusLabel.text()


def test_where_to_run_from_the_options_reaches_the_job(dock, project, tmp_path):
    """Run on: this process by default, worker processes or a Dask scheduler; a setting that is
    none of these is said in the form and no job leaves."""
    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    assert dock.clusterCombo.currentText() == "local" and dock.clusterCombo.findText("local:2") >= 0
    dock.runMapButton.click()
    assert jobs[-1].cluster == "local"
    dock.clusterCombo.setEditText("tcp://10.1.2.3:8786")
    dock.runMapButton.click()
    assert jobs[-1].cluster == "tcp://10.1.2.3:8786"
    jobs[-1].validate()
    dock.clusterCombo.setEditText("everywhere")
    dock.runMapButton.click()
    assert len(jobs) == 2 and "Run on" in dock.mapStatusLabel.text() and "everywhere" in dock.mapStatusLabel.text()


def test_the_area_to_map_reaches_the_job(dock, project, tmp_path, qgis_canvas):
    """Whole images, the map view's extent (in the canvas CRS), or a polygon layer (a memory
    layer's selected polygon is copied for the worker); each wrong choice is said under it."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsRectangle

    from landslide_mapper.core.geodata.area import area_of_interest, read_polygons

    jobs = []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    dock.runMapButton.click()
    assert (jobs[-1].area, jobs[-1].bounds) == (None, None)                 # whole images by default
    assert not dock.areaPicker.polygonsRow.isVisibleTo(dock)

    dock.areaPicker.set_mode("extent")                                     # no canvas yet: said so
    dock.runMapButton.click()
    assert len(jobs) == 1 and "no map view" in dock.mapAreaProblemLabel.text()
    dock.map_canvas = qgis_canvas
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32645"))
    qgis_canvas.setExtent(QgsRectangle(300030, 3099880, 300120, 3099970))
    dock.runMapButton.click()
    job = jobs[-1]
    assert len(jobs) == 2 and not dock.mapAreaProblemLabel.isVisible()
    aoi = area_of_interest(None, job.bounds, job.bounds_crs, CRS.from_epsg(32645))
    x0, y0, x1, y1 = aoi.geometry.bounds                  # the canvas may widen to its aspect
    assert x0 <= 300030 and x1 >= 300120 and y0 <= 3099880 and y1 >= 3099970 and x1 - x0 < 1000

    dock.areaPicker.set_mode("polygons")
    assert dock.areaPicker.polygonsRow.isVisibleTo(dock)
    dock.runMapButton.click()
    assert len(jobs) == 2 and "Choose the polygon layer" in dock.mapAreaProblemLabel.text()
    area = project(QgsVectorLayer("Polygon?crs=EPSG:32645", "catchment", "memory"))
    for rect in (QgsRectangle(300000, 3099900, 300090, 3100000), QgsRectangle(300100, 3099850, 300190, 3099950)):
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromRect(rect))
        area.dataProvider().addFeatures([f])
    dock.areaPicker.layerCombo.setLayer(area)
    dock.areaPicker.selectedCheck.setChecked(True)
    dock.runMapButton.click()
    assert len(jobs) == 2 and "No feature of catchment is selected" in dock.mapAreaProblemLabel.text()
    area.selectByIds([f.id() for f in area.getFeatures() if f.geometry().boundingBox().xMinimum() == 300000])
    dock.runMapButton.click()
    assert len(jobs) == 3
    jobs[-1].validate()
    polygons = read_polygons(jobs[-1].area, None, "area")
    assert len(polygons) == 1 and polygons[0].bounds == (300000, 3099900, 300090, 3100000)


def test_the_fine_tune_tab_fits_a_narrow_dock(dock, project, tmp_path):
    """Image, landslides, reviewed area, region, year, bands and the check all in view in a
    dock 380 px wide: no sideways scrolling."""
    from qgis.PyQt.QtWidgets import QApplication

    img = project(raster(tmp_path, "scene_2017"))
    labels = project(QgsVectorLayer(str(polygons_gpkg(tmp_path / "l.gpkg", [box(300010, 3099900, 300050, 3099950)])),
                                    "landslides_2017", "ogr"))
    dock.resize(380, 900)
    dock.show()
    dock.tabs.setCurrentWidget(dock.trainTab)
    dock.add_training_row(img, labels, None, region="Valley", bands="planetscope4")
    QApplication.processEvents()
    table = dock.trainingTable
    header = table.horizontalHeader()
    assert [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())] == [
        "Layers", "Region, year, bands", "Check"]
    right = max(header.sectionViewportPosition(c) + header.sectionSize(c) for c in range(table.columnCount()))
    assert right <= table.viewport().width() and not table.horizontalScrollBar().isVisible()
    layers, details = table.cellWidget(0, 0), table.cellWidget(0, 1)
    for w in (*layers.widgets.values(), *details.widgets.values()):
        assert w.isVisible() and w.width() >= 60 and w.height() > 10
    assert table.rowHeight(0) >= layers.sizeHint().height()
    row = dock.training_rows()[0]
    assert (row["raster"], row["labels"], row["reviewed"], row["region"], row["year"], row["bands"]) == (
        img, labels, None, "Valley", 2017, "planetscope4")
    dock.runTrainButton.click()
    assert dock.row_check(table, 0) == "OK"


def test_the_training_curve_grows_with_each_round(dock):
    from qgis.PyQt.QtGui import QColor

    dock.resize(380, 900)
    dock.show()
    dock.tabs.setCurrentWidget(dock.trainTab)
    curve = dock.trainingCurve
    assert curve.isVisible() and curve.values("loss") == []
    for epoch, (loss, val_loss, f1) in enumerate([(0.9, 0.8, 0.2), (0.6, 0.7, 0.45), (0.4, 0.65, None)], 1):
        dock.on_train_event({"event": "epoch", "epoch": epoch, "loss": loss, "val_loss": val_loss,
                             "val_f1": f1, "val_iou": None})
    assert curve.values("loss") == [0.9, 0.6, 0.4] and curve.values("val_f1") == [0.2, 0.45, None]
    assert dock.epochTable.rowCount() == 3
    image = curve.grab().toImage()
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)}
    assert QColor("#d35400").name() in colours and QColor("#2e86c1").name() in colours   # F1 and loss drawn
    dock.on_train_event({"event": "progress", "fraction": 0.5, "message": "round 4"})
    assert len(curve.rounds) == 3                      # only rounds add points
    curve.clear()
    assert curve.rounds == []


def test_a_very_large_job_asks_first(dock, project, tmp_path, monkeypatch):
    """Above the pixel limit the dock asks; No keeps the job back, Yes sends it without the
    limit; an Area that shrinks the job below the limit needs no question."""
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QApplication, QMessageBox

    from landslide_mapper.ui import dock_jobs as dock_module

    monkeypatch.setattr(dock_module, "LARGE_JOB_PIXELS", 5000)       # the two 64 × 64 images: 8,192 px
    jobs, asked = [], []
    dock.jobRequested.connect(lambda job, title: jobs.append(job))
    dock.add_year_row(2017, project(raster(tmp_path, "scene_2017")))
    dock.add_year_row(2018, project(raster(tmp_path, "scene_2018")))
    assert dock.pixels_to_map() == 2 * 64 * 64

    def answer(button):
        def click():
            box = QApplication.activeModalWidget()
            asked.append(box.text())
            box.button(button).click()
        QTimer.singleShot(200, click)

    answer(QMessageBox.StandardButton.No)
    dock.runMapButton.click()
    assert jobs == [] and "8,192" in asked[0] and "very large job" in dock.mapStatusLabel.text()
    answer(QMessageBox.StandardButton.Yes)
    dock.runMapButton.click()
    assert len(jobs) == 1 and jobs[0].max_pixels is None
    area = project(QgsVectorLayer("Polygon?crs=EPSG:32645", "corner", "memory"))
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle

    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromRect(QgsRectangle(300000, 3099904, 300096, 3100000)))      # 32 × 32 px
    area.dataProvider().addFeatures([f])
    area.updateExtents()
    dock.areaPicker.set_mode("polygons")
    dock.areaPicker.layerCombo.setLayer(area)
    assert dock.pixels_to_map() == pytest.approx(2 * 32 * 32)
    dock.runMapButton.click()
    assert len(jobs) == 2 and len(asked) == 2 and jobs[1].max_pixels == 5000


def test_the_forms_mapping_defaults_are_the_job_specs(dock):
    """One place says the defaults (core/jobs/specs.py): the dock, Processing and the CLI read them."""
    from landslide_mapper.core.jobs.cli import build_parser

    assert (dock.overlapSpin.value(), dock.batchSpin.value(), dock.minAreaSpin.value()) == \
        (InferenceJob.overlap, InferenceJob.batch_size, InferenceJob.min_area_m2)
    args = build_parser().parse_args(["infer", "2017=a.tif", "-o", "out"])
    assert (args.overlap, args.batch, args.min_area, args.device, args.cluster) == \
        (InferenceJob.overlap, InferenceJob.batch_size, InferenceJob.min_area_m2, InferenceJob.device,
         InferenceJob.cluster)
