"""Run by ``qgis --code`` from tools/screenshots.sh: drives the dock like a user and grabs PNGs.

Never blocks the event loop: each step is scheduled with a timer, and the mapping run is
the plugin's own QgsTask in the worker process.
"""
import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import (QgsApplication, QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsProject,
                       QgsRasterLayer, QgsRasterMinMaxOrigin)
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.utils import iface, plugins, startPlugin

SCENE = Path(os.environ["LM_SCENE_DIR"])
OUT = Path(os.environ["LM_OUT"])
RUNS = os.environ["LM_RUNS"]
WORKER = os.environ["LM_WORKER_PYTHON"]
state = {"started": time.monotonic(), "shots": [], "error": None}


def later(ms, fn):
    def guarded():
        try:
            fn()
        except Exception:
            state["error"] = traceback.format_exc()
            finish()
    QTimer.singleShot(ms, guarded)


def shot(widget, name):
    path = OUT / f"{len(state['shots']) + 1:02d}_{name}.png"
    widget.grab().save(str(path))
    state["shots"].append(path.name)


def plugin():
    if "landslide_mapper" not in plugins:
        startPlugin("landslide_mapper")
    return plugins["landslide_mapper"]


def start():
    """A first run: a worker Python without the packages, the banner that sets one up, its
    progress and its cancel; then the real worker for the rest."""
    window = iface.mainWindow()
    window.resize(1600, 1000)
    dock = plugin().dock
    dock.show()
    dock.raise_()
    window.resizeDocks([dock], [470], Qt.Orientation.Horizontal)       # a user widens the dock to work in it
    dock.workerPythonWidget.setFilePath("/usr/bin/python3")  # Debian's: no ONNX Runtime, no TensorFlow
    dock.check_worker()
    later(5000, first_run_shots)


def first_run_shots():
    dock = plugin().dock
    shot(dock, "first_run_worker_missing")
    # the set-up's progress, with a stand-in command so that no download is needed here
    slow = [WORKER, "-c", "import time; print('Collecting onnxruntime', flush=True); time.sleep(30)"]
    dock.create_environment(Path(RUNS) / "worker-venv", commands=[slow])
    later(2500, lambda: (shot(dock, "first_run_worker_setup_running"), dock.workerBanner.cancel_button.click()))
    later(5000, lambda: (shot(dock, "first_run_worker_setup_cancelled"), dock.workerPythonWidget.setFilePath(WORKER),
                         dock.check_worker()))
    later(9000, mapping_start)


def mapping_start():
    window = iface.mainWindow()
    p = plugin()
    for tif in sorted(SCENE.glob("scene_*.tif")):
        layer = QgsRasterLayer(str(tif), tif.stem)
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1))   # R, G, B of B,G,R,NIR
        layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum,
                                     QgsRasterMinMaxOrigin.CumulativeCut)
        QgsProject.instance().addMapLayer(layer)
    iface.mapCanvas().setExtent(next(iter(QgsProject.instance().mapLayers().values())).extent())
    dock = p.dock
    window.resizeDocks([dock], [470], Qt.Orientation.Horizontal)
    dock.outputFolderWidget.setFilePath(RUNS)
    dock.checkpointFolderWidget.setFilePath(str(Path(RUNS) / "checkpoints"))
    dock.add_image_layers()
    dock.runNameEdit.setText("demo")
    # first what a mistake looks like: the same year twice
    dock.add_year_row(2019, QgsProject.instance().mapLayersByName("scene_2018")[0])
    dock.runMapButton.click()
    later(500, validation_shot)


def validation_shot():
    dock = plugin().dock
    shot(dock, "dock_map_tab_with_a_mistake")
    dock.yearsTable.removeRow(dock.yearsTable.rowCount() - 1)
    dock.runMapButton.click()
    later(1500, running_shot)


def running_shot():
    shot(iface.mainWindow(), "mapping_running")
    later(500, wait_for_run)


def waiting(done, retry, what: str, limit_s: float, since: str = "started") -> bool:
    """True (and ``retry`` scheduled in a second) while ``done()`` is not; a timeout past
    ``limit_s`` seconds from ``state[since]`` stops the script with ``what``."""
    if done():
        return False
    if time.monotonic() - state[since] > limit_s:
        raise TimeoutError(f"{what} did not finish in time")
    later(1000, retry)
    return True


def wait_for_run():
    controller = plugin().controller
    if waiting(lambda: controller.done, wait_for_run, "the mapping run", 800):
        return
    task = controller.done[0]
    if task.result is None:
        raise RuntimeError(f"mapping failed: {task.error_message}\n{task.details}")
    iface.mapCanvas().refreshAllLayers()
    later(4000, result_shots)


def result_shots():
    p = plugin()
    iface.mainWindow().resizeDocks([p.chart_panel], [440], Qt.Orientation.Vertical)
    later(1500, lambda: (shot(iface.mainWindow(), "map_with_results_and_charts"),
                         p.dock.areaPicker.set_mode("polygons"), shot(p.dock, "dock_map_tab_after_run"),
                         p.dock.areaPicker.set_mode("whole")))
    later(2000, float_panel)


def float_panel():
    panel = plugin().chart_panel
    panel.setFloating(True)
    panel.resize(900, 800)
    panel.show()
    later(800, lambda: chart_shots(panel))


def chart_shots(panel):
    shot(panel, "chart_panel_fad")
    panel.set_chart("Trend over years")
    later(500, lambda: (shot(panel, "chart_panel_trend"), tab_shots()))


def tab_shots():
    """The Fine-tune tab, then a short real fine-tune on the mapped 2017 landslides: the dock's
    progress and Cancel, and the loss/F1 curve growing round by round."""
    dock = plugin().dock
    dock.tabs.setCurrentWidget(dock.trainTab)
    scene = QgsProject.instance().mapLayersByName("scene_2017")[0]
    landslides = QgsProject.instance().mapLayersByName("landslides 2017")
    dock.add_training_row(scene, landslides[0] if landslides else None, None, region="Demo valley")
    dock.newNameEdit.setText("cascade_demo_valley")
    dock.epochsSpin.setValue(4)
    dock.patchSizeCombo.setCurrentText("64")
    dock.trainBatchSpin.setValue(4)
    later(300, lambda: shot(dock, "dock_finetune_tab"))
    later(600, lambda: (dock.runTrainButton.click(), later(1000, wait_for_training)))


def wait_for_training():
    dock, controller = plugin().dock, plugin().controller
    if len(dock.trainingCurve.rounds) >= 2 and "finetune_running" not in state:
        state["finetune_running"] = True
        dock.trainTabScroll.ensureWidgetVisible(dock.trainingCurve)
        shot(dock, "dock_finetune_running")
    if waiting(lambda: len(controller.done) >= 2, wait_for_training, "the fine-tune", 1500):
        return
    task = controller.done[1]
    if task.result is None:
        raise RuntimeError(f"fine-tuning failed: {task.error_message}\n{task.details}")
    dock.trainTabScroll.ensureWidgetVisible(dock.trainingCurve)
    later(1500, lambda: (shot(dock, "dock_finetune_done"), shot(iface.mainWindow(), "finetune_done_message"),
                         other_tabs()))


def other_tabs():
    dock = plugin().dock
    later(300, lambda: (dock.tabs.setCurrentWidget(dock.analyseTab), dock.add_inventory_layers()))
    later(900, lambda: shot(dock, "dock_analyse_tab"))
    later(1200, lambda: (dock.tabs.setCurrentWidget(dock.workerTab), dock.check_worker()))
    later(6000, lambda: (shot(dock, "dock_worker_tab"), processing_shots()))


def processing_shots():
    """The same mapping from the Processing toolbox: the algorithm dialog, run as Processing
    runs it (a background task), its layers loaded by Processing."""
    import processing

    images = [str(p) for p in sorted(SCENE.glob("scene_*.tif"))[:2]]
    dialog = processing.createAlgorithmDialog("landslide_mapper:map_landslides", {
        "IMAGES": images, "OUTPUT_FOLDER": RUNS, "RUN_NAME": "toolbox"})
    dialog.resize(1000, 820)
    dialog.show()
    state["dialog"] = dialog
    state["toolbox_started"] = time.monotonic()
    later(1000, lambda: (shot(dialog, "processing_map_dialog"), dialog.runAlgorithm()))
    later(3000, wait_for_dialog)


def wait_for_dialog():
    dialog = state["dialog"]
    if waiting(dialog.results, wait_for_dialog, "the Processing run", 300, since="toolbox_started"):
        return
    loaded = [lay.name() for lay in QgsProject.instance().mapLayers().values()]
    if loaded.count("landslides 2017") < 2:     # one from the dock's run, one from Processing
        raise RuntimeError(f"Processing did not load its layers: {sorted(loaded)}")
    later(1500, lambda: (shot(dialog, "processing_map_log"), dialog.close(),
                         shot(iface.mainWindow(), "map_after_processing"), failure_shots()))


def failure_shots():
    """A job that fails in the worker: the message bar, then its Details dialog."""
    from landslide_mapper.core.jobs.specs import InferenceJob, YearInput
    from qgis.PyQt.QtWidgets import QApplication, QPushButton

    controller = plugin().controller
    before = len(controller.done)
    controller.submit(InferenceJob(years=[YearInput(2017, str(SCENE / "missing_2017.tif"))], model="auto",
                                   output_dir=RUNS), "Landslide Mapper: mapping 2017")

    def wait():
        if len(controller.done) == before:
            later(500, wait)
            return
        later(1000, details)

    def details():
        shot(iface.mainWindow(), "failure_message")
        item = iface.messageBar().currentItem()
        button = next(b for b in item.findChildren(QPushButton) if b.text() == "Details")

        def grab_dialog():
            box = QApplication.activeModalWidget()
            for b in box.findChildren(QPushButton):     # "Show Details..." expands the log
                if "Details" in b.text():
                    b.click()
            QTimer.singleShot(500, lambda: (shot(box, "failure_details_dialog"), box.close(), finish()))
        QTimer.singleShot(800, grab_dialog)
        button.click()                                  # modal: exec() runs until grab_dialog closes it
    later(500, wait)


def finish():
    (OUT / "done.json").write_text(json.dumps({"screenshots": state["shots"], "error": state["error"],
                                               "seconds": round(time.monotonic() - state["started"], 1)},
                                              indent=2))
    QgsApplication.exit(0)


later(3000, start)
