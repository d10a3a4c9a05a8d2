"""The whole loop as a user drives it: the dock emits a job, the controller runs it as a
QgsTask in the worker, and the results land on the map, in the chart panel and in the
message bar; a fine-tune adds a checkpoint with a new lineage stage to the pickers."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from qgis.core import (QgsApplication, QgsCategorizedSymbolRenderer, QgsProject, QgsRasterLayer,
                       QgsSingleBandPseudoColorRenderer, QgsVectorLayer)
from qgis.gui import QgsMessageBar
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QObject, QTimer, QUrl, pyqtSlot
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QApplication, QPushButton

from conftest import ROOT, needs_training
from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT
from landslide_mapper.core.demo import SceneSpec, generate_scene
from landslide_mapper.core.geodata.vector_io import read_layer
from landslide_mapper.plugin import make_controller
from landslide_mapper.ui.chart_panel import ChartPanel
from landslide_mapper.ui.dock import LandslideMapperDock

BUNDLED = CASCADE_CHECKPOINT
_KEEP_ALIVE: list = []


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small procedural demo scene: two years, the 2017 event."""
    folder = tmp_path_factory.mktemp("scene")
    return generate_scene(folder, SceneSpec(size=192, years=(2016, 2017), seed=3))


@pytest.fixture
def setup(qgis_app, qgis_parent, tmp_path, scene):
    """Dock + controller + chart panel, as plugin.initGui wires them. The inputs are in the
    current project (the dock's layer pickers list it); results go to a project of their
    own (kept alive: dropping a QgsProject with live layer-tree wrappers crashes), so the
    tests see exactly what the runs added."""
    project = QgsProject.instance()
    results = QgsProject()
    _KEEP_ALIVE.append(results)
    bar = QgsMessageBar(qgis_parent)
    panels: list[ChartPanel] = []

    def chart_panel():
        if not panels:
            panels.append(ChartPanel(qgis_parent))
        return panels[0]

    dock = LandslideMapperDock(ROOT / "models", qgis_parent)
    dock.checkpointFolderWidget.setFilePath(str(tmp_path / "checkpoints"))
    dock.outputFolderWidget.setFilePath(str(tmp_path / "runs"))
    dock.workerPythonWidget.setFilePath(sys.executable)
    controller = make_controller(dock, bar, chart_panel, project=results)
    layers = []
    for year, path in sorted(scene.rasters.items()):
        layer = QgsRasterLayer(path, f"scene_{year}")
        project.addMapLayer(layer)
        layers.append(layer)
    yield dock, controller, project, results, bar, panels
    results.layerTreeRoot().removeAllChildren()
    results.removeAllMapLayers()
    project.removeAllMapLayers()
    for widget in (*panels, dock, bar):
        widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)   # gone before the next test


def wait_for(controller, count: int, timeout: float = 180.0, while_running=None) -> None:
    deadline = time.monotonic() + timeout
    while len(controller.done) < count and time.monotonic() < deadline:
        QgsApplication.processEvents()
        if while_running is not None:
            while_running()
        time.sleep(0.02)
    tm = QgsApplication.taskManager()
    assert len(controller.done) >= count, (f"{count - len(controller.done)} job(s) did not finish in {timeout} s; "
                                           f"tasks {[(t.description(), t.status()) for t in tm.tasks()]}, "
                                           f"running {controller.running and controller.running.status()}")


def bar_texts(bar: QgsMessageBar) -> list[str]:
    return [f"{item.title()}: {item.text()}" for item in bar.items()]


class UrlCatcher(QObject):
    """Receives the URLs QDesktopServices would open (no file manager or browser here)."""

    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    @pyqtSlot(QUrl)
    def catch(self, url):
        self.paths.append(url.toLocalFile())


def test_mapping_run_adds_groups_layers_styles_and_charts(setup, tmp_path):
    dock, controller, project, results, bar, panels = setup
    assert dock.add_image_layers() == 2
    dock.runNameEdit.setText("valley")
    dock.runMapButton.click()
    assert controller.running is not None and dock.queueLabel.text().startswith("Running: Landslide Mapper: mapping")
    wait_for(controller, 1)
    task = controller.done[0]
    assert task.error is None, task.details
    assert dock.queueLabel.text() == "No job running."
    group = results.layerTreeRoot().children()[0]
    assert group.name() == "Landslide Mapper — valley"
    assert [g.name() for g in group.children()] == ["2017", "2016"]
    y2017 = [n.layer() for n in group.children()[0].findLayers()]
    assert [lay.name() for lay in y2017] == ["new or enlarged 2017", "landslides 2017", "probability 2017"]
    assert isinstance(y2017[0].renderer(), QgsCategorizedSymbolRenderer)
    assert isinstance(y2017[2].renderer(), QgsSingleBandPseudoColorRenderer)
    assert y2017[1].featureCount() > 0
    assert any("Mapped 2016, 2017" in t for t in bar_texts(bar))
    # the success message opens the run folder and the same report.html Processing writes
    item = next(i for i in bar.items() if "Mapped 2016, 2017" in i.text())
    buttons = {b.text(): b for b in item.findChildren(QPushButton)}
    assert set(buttons) == {"Open folder", "Open report"}
    report = Path(task.result["run_dir"]) / "report.html"
    assert report.is_file() and "Landslide mapping valley" in report.read_text(encoding="utf-8")
    opened = UrlCatcher()
    QDesktopServices.setUrlHandler("file", opened, "catch")
    try:
        buttons["Open report"].click()
        buttons["Open folder"].click()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert opened.paths == [str(report), task.result["run_dir"]]
    panel = panels[0]
    assert panel.run_dir == Path(task.result["run_dir"])
    assert "Trend over years" in panel.chart_names() and panel.table_rows()

    # the user corrects a predicted polygon, then maps again with the same run name:
    # a new run folder, and the corrected layer is untouched
    landslides = y2017[1]
    before = landslides.featureCount()
    landslides.startEditing()
    landslides.deleteFeature(next(landslides.getFeatures()).id())
    assert landslides.commitChanges()
    dock.runMapButton.click()
    wait_for(controller, 2)
    second = controller.done[1].result["run_dir"]
    assert Path(second).name == "valley_2" and second != task.result["run_dir"]
    # (read with GDAL: a free-standing QgsVectorLayer on a GeoPackage that an edited project
    # layer also holds open crashes at interpreter exit on QGIS 3.22)
    assert len(read_layer(task.result["geopackage"], "landslides_2017").geometries) == before - 1


def test_jobs_queue_and_cancel_leaves_nothing(setup, tmp_path):
    dock, controller, project, results, bar, panels = setup
    dock.add_image_layers()
    dock.tileSizeSpin.setValue(64)                     # many small tiles: slow enough to cancel
    dock.overlapSpin.setValue(0)
    dock.batchSpin.setValue(1)
    dock.runMapButton.click()
    dock.runMapButton.click()
    assert len(controller.pending) == 1 and "Waiting:" in dock.queueLabel.text()
    assert dock.cancelQueuedButton.isEnabled()
    dock.cancelQueuedButton.click()
    assert not controller.pending and "Waiting:" not in dock.queueLabel.text()
    first = controller.running
    # the dock shows the running job's progress, with its own Cancel button
    assert dock.jobProgressRow.isVisibleTo(dock) and dock.cancelRunningButton.isEnabled()
    assert "mapping 2016–2017" in dock.jobProgressBar.format()
    seen = []

    def cancel_when_started():
        if dock.jobProgressBar.value() > 0 and not first.isCanceled():
            seen.append(dock.jobProgressBar.value())
            dock.cancelRunningButton.click()
            assert not dock.cancelRunningButton.isEnabled()          # once: it is stopping

    wait_for(controller, 1, while_running=cancel_when_started)
    assert seen and first.isCanceled() and first.result is None
    assert not dock.jobProgressRow.isVisibleTo(dock)
    assert any("Cancelled; no partial outputs were kept" in t for t in bar_texts(bar))
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir()]
    assert results.layerTreeRoot().children() == []


def test_failure_shows_the_workers_reason_with_details(setup, tmp_path):
    dock, controller, project, results, bar, panels = setup
    # a copy of one year that goes bad after QGIS opened it: only the worker can find out
    path = tmp_path / "copy_2016.tif"
    shutil.copy(project.mapLayersByName("scene_2016")[0].source(), path)
    dock.add_year_row(2016, project.addMapLayer(QgsRasterLayer(str(path), "copy_2016")))
    dock.runMapButton.click()
    path.write_bytes(b"not a GeoTIFF any more")
    wait_for(controller, 1)
    task = controller.done[0]
    assert task.result is None and "copy_2016.tif" in task.error_message
    item = bar.items()[0]
    assert item.text() == task.error_message
    (button,) = [b for b in item.findChildren(QPushButton) if b.text() == "Details"]
    assert task.error["message"] in task.details
    expected = (item.title(), task.error_message, task.details)
    # QGIS deletes a finished task; the button still shows what the task said
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert sip.isdeleted(task)
    shown = []

    def read_and_close():
        box = QApplication.activeModalWidget()
        shown.append((box.windowTitle(), box.text(), box.detailedText()))
        box.close()

    QTimer.singleShot(0, read_and_close)
    button.click()
    assert shown == [expected]


@needs_training
def test_fine_tune_adds_a_checkpoint_with_a_new_lineage_stage(setup, tmp_path, scene):
    dock, controller, project, results, bar, panels = setup
    img = project.mapLayersByName("scene_2017")[0]
    truth = QgsVectorLayer(f"{scene.truth_path}|layername=landslides_2017", "landslides_2017", "ogr")
    project.addMapLayer(truth)
    dock.tabs.setCurrentWidget(dock.trainTab)
    dock.add_training_row(img, truth, None, region="Demo valley")
    dock.newNameEdit.setText("cascade_demo_valley")
    dock.epochsSpin.setValue(1)
    dock.trainBatchSpin.setValue(4)
    dock.patchSizeCombo.setCurrentText("64")
    dock.runTrainButton.click()
    wait_for(controller, 1, timeout=600)
    task = controller.done[0]
    assert task.error is None, task.details
    new = Path(task.result["checkpoint"])
    assert new.parent == tmp_path / "checkpoints" and new.name == "cascade_demo_valley"
    info = json.loads((new / "checkpoint.json").read_text())
    base = json.loads((BUNDLED / "checkpoint.json").read_text())
    assert len(info["lineage"]) == len(base["lineage"]) + 1
    assert info["lineage"][-1]["base_id"] == base["id"] and info["lineage"][-1]["region"] == "Demo valley"
    stage = info["lineage"][-1]
    assert stage["base_validation"] is not None and stage["improved"] is task.result["improved"]
    assert dock.epochTable.rowCount() == 1 and dock.epochTable.item(0, 0).text() == "1"
    assert any("New checkpoint cascade_demo_valley" in t for t in bar_texts(bar))
    if task.result["improved"]:
        # a better stage is picked for mapping and for the next fine-tune
        assert dock.selected_model().path == new and dock.baseCheckpointCombo.currentData() == str(new)
        assert "stage" in dock.checkpointCombo.currentText()
        assert any("better than its base" in t for t in bar_texts(bar))
    else:
        # one that is not better is listed but not chosen, and the message says so
        assert dock.checkpointCombo.findData(str(new)) >= 0 and dock.selected_model().path != new
        assert dock.baseCheckpointCombo.currentData() != str(new)
        assert any("NOT better than its base" in t for t in bar_texts(bar))


def test_a_worker_python_without_the_packages_is_named_with_the_fix(setup, tmp_path):
    dock, controller, project, results, bar, panels = setup
    dock.workerPythonWidget.setFilePath("/usr/bin/python3")      # Debian's: no ONNX Runtime, no TensorFlow
    dock.add_image_layers()
    dock.runMapButton.click()
    wait_for(controller, 1)
    text = bar.items()[0].text()
    assert "/usr/bin/python3" in text and "Worker tab" in text
    # the Worker tab's check says what is missing, in the background
    task = dock.check_worker()
    deadline = time.monotonic() + 60
    while "lacks" not in dock.workerStatusLabel.text() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    assert "onnxruntime" in dock.workerStatusLabel.text() and task is not None
    # said once, in the banner above the tabs, with the set-up button; mapping waits for it
    while not dock.workerBanner.isVisibleTo(dock) and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    banner = dock.workerBanner
    assert banner.isVisibleTo(dock) and "onnxruntime" in banner.message.text()
    assert banner.setup_button.isVisibleTo(dock) and "MB download" in banner.setup_button.text()
    assert not dock.runMapButton.isEnabled() and "Set up the worker" in dock.runMapButton.toolTip()
    assert not dock.runTrainButton.isEnabled()
    assert dock.mapStatusLabel.text() == "" or "worker" not in dock.mapStatusLabel.text().lower()
    # a usable worker again: banner gone, buttons back with their own tooltips
    from landslide_mapper.tasks.worker_env import probe
    here = probe(sys.executable)
    dock.show_probe(here)
    assert not banner.isVisibleTo(dock) and dock.runMapButton.isEnabled()
    assert dock.runTrainButton.isEnabled() == here.can_train        # True here; False on Python 3.14
    assert "Set up" not in dock.runMapButton.toolTip()


def test_a_worker_that_maps_but_cannot_train_disables_only_training(setup):
    from landslide_mapper.tasks.worker_env import Probe
    dock = setup[0]
    mapping_only = Probe(python="/opt/py314/bin/python", ok=True, missing=["tensorflow", "keras"],
                         versions={"onnxruntime": "1.24.1", "numpy": "2.3.4"}, python_version="3.14.0")
    dock.show_probe(mapping_only)
    assert dock.runMapButton.isEnabled() and not dock.workerBanner.isVisibleTo(dock)
    assert not dock.runTrainButton.isEnabled()
    assert "Python 3.14" in dock.runTrainButton.toolTip()
    assert "cannot train" in dock.workerStatusLabel.text()


def test_the_banner_sets_up_the_worker_with_progress_and_cancel(setup, tmp_path):
    dock = setup[0]
    env_dir = tmp_path / "worker-venv"
    marker = tmp_path / "started"
    slow = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(env_dir)!r}).mkdir(); "
                                  f"pathlib.Path({str(marker)!r}).touch(); time.sleep(30)"]
    task = dock.create_environment(env_dir, commands=[slow])
    banner = dock.workerBanner
    assert banner.isVisibleTo(dock) and banner.progress.isVisibleTo(dock) and banner.cancel_button.isVisibleTo(dock)
    assert str(env_dir) in banner.message.text()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    banner.cancel_button.click()
    while dock.worker_setup.setup_running and time.monotonic() < deadline + 20:
        QgsApplication.processEvents()
        time.sleep(0.02)
    assert not dock.worker_setup.setup_running and task is not None
    assert "did not finish" in banner.message.text() and "Cancelled" in banner.message.text()
    assert banner.setup_button.isVisibleTo(dock) and not banner.progress.isVisibleTo(dock)
    assert not env_dir.exists()


def test_diagnostics_go_to_the_clipboard(setup):
    from landslide_mapper.tasks.worker_env import probe
    dock = setup[0]
    report = dock.copy_diagnostics(probe(sys.executable))
    assert QApplication.clipboard().text() == report
    for needle in ("QGIS 3.", "Qt 5.", "Python 3.", sys.executable, "onnxruntime", "ONNX Runtime providers: ",
                   "CPUExecutionProvider", "NVIDIA GPU", "Pin set for this worker"):
        assert needle in report, needle
