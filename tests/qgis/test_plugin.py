"""Tests of the QGIS side of the plugin: metadata, light package import, plugin life cycle
and the rule that ``core/`` never imports QGIS or Qt.

Run with ``QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q tests/qgis/test_plugin.py``.
pytest-qgis starts a real QgsApplication and gives a stub ``QgisInterface`` (``qgis_iface``)
whose main window is a real QMainWindow (``qgis_parent``).
"""
from __future__ import annotations

import ast
import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent, Qt
from qgis.PyQt.QtGui import QImage
from qgis.PyQt.QtSvg import QSvgRenderer
from qgis.PyQt.QtWidgets import QDockWidget, QMenu, QToolBar

import landslide_mapper
from landslide_mapper.plugin import MENU_NAME, LandslideMapperPlugin
from landslide_mapper.ui.dock import DEFAULT_MODELS_DIR, LandslideMapperDock

PLUGIN_DIR = Path(__file__).resolve().parents[2]
CORE_DIR = PLUGIN_DIR / "core"
DOCK_OBJECT_NAME = "LandslideMapperDock"


# --------------------------------------------------------------------------- helpers


class IfaceCompletion:
    """The QgisInterface methods the plugin calls that pytest-qgis 2.1.0's stub lacks.

    The stub has no ``addPluginToRasterMenu``, ``removePluginRasterMenu`` or
    ``removeDockWidget``, and its ``addDockWidget``/``addToolBarIcon``/``removeToolBarIcon``
    do nothing. These implementations do what QGIS does, with real Qt objects on the stub's
    real main window, so the tests can see the dock, menu entry and button appear and go.
    """

    RASTER_MENU = "mRasterMenu"
    PLUGIN_TOOLBAR = "mPluginToolBar"

    def __init__(self, main_window):
        self.main_window = main_window

    def raster_menu(self) -> QMenu:
        menu_bar = self.main_window.menuBar()
        menu = menu_bar.findChild(QMenu, self.RASTER_MENU)
        if menu is None:
            menu = QMenu("&Raster", menu_bar)
            menu.setObjectName(self.RASTER_MENU)
            menu_bar.addMenu(menu)
        return menu

    def plugin_submenu(self, name: str):
        for action in self.raster_menu().actions():
            if action.menu() is not None and action.text() == name:
                return action.menu()
        return None

    def plugin_toolbar(self) -> QToolBar:
        toolbar = self.main_window.findChild(QToolBar, self.PLUGIN_TOOLBAR)
        if toolbar is None:
            toolbar = self.main_window.addToolBar("Plugins")
            toolbar.setObjectName(self.PLUGIN_TOOLBAR)
        return toolbar

    # QgisInterface API
    def addDockWidget(self, area, dock):  # noqa: N802
        self.main_window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.main_window.removeDockWidget(dock)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        submenu = self.plugin_submenu(name)
        if submenu is None:
            submenu = self.raster_menu().addMenu(name)
        submenu.addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        submenu = self.plugin_submenu(name)
        if submenu is None:
            return
        submenu.removeAction(action)
        if not submenu.actions():
            self.raster_menu().removeAction(submenu.menuAction())
            submenu.deleteLater()

    def addToolBarIcon(self, action):  # noqa: N802
        self.plugin_toolbar().addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.plugin_toolbar().removeAction(action)


@pytest.fixture()
def iface(qgis_iface, qgis_parent, monkeypatch):
    """pytest-qgis's ``qgis_iface``, completed with the methods the plugin needs."""
    completion = IfaceCompletion(qgis_iface.mainWindow())
    for name in (
        "addDockWidget",
        "removeDockWidget",
        "addPluginToRasterMenu",
        "removePluginRasterMenu",
        "addToolBarIcon",
        "removeToolBarIcon",
    ):
        monkeypatch.setattr(qgis_iface, name, getattr(completion, name), raising=False)
    qgis_iface.completion = completion
    yield qgis_iface
    qgis_parent.hide()
    del qgis_iface.completion


def process_deferred_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def plugin_docks(main_window) -> list:
    return [
        dock
        for dock in main_window.findChildren(QDockWidget, DOCK_OBJECT_NAME)
        if not sip.isdeleted(dock)
    ]


@pytest.fixture()
def models_folder(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "x.onnx").write_bytes(b"\x08\x07not really a model")
    card = {
        "name": "ADSMS U-Net cascade (test)",
        "description": "Dummy model card for the dock test",
        "kind": "adsms_unet_cascade",
        "bands": ["blue", "green", "red", "nir"],
        "tile_size": 256,
        "threshold": 0.5,
    }
    (folder / "x.json").write_text(json.dumps(card), encoding="utf-8")
    (folder / "y.onnx").write_bytes(b"no card for this one")
    (folder / "notes.txt").write_text("not a model", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- metadata


REQUIRED_METADATA = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "homepage",
    "repository",
    "tracker",
    "tags",
    "category",
    "icon",
    "experimental",
    "hasProcessingProvider",
)


def read_metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keys are camelCase, as QGIS reads them
    with open(PLUGIN_DIR / "metadata.txt", encoding="utf-8") as f:
        parser.read_file(f)
    return parser["general"]


def test_metadata_has_every_required_key():
    meta = read_metadata()
    missing = [key for key in REQUIRED_METADATA if not meta.get(key, "").strip()]
    assert not missing, f"metadata.txt lacks {missing}"

    assert meta["name"] == "Landslide Mapper"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert "\n" not in meta["description"]
    assert len(re.findall(r"\.(?:\s|$)", meta["about"])) >= 3  # several sentences
    assert meta["category"] == "Raster"
    assert meta["repository"].startswith("https://")
    assert meta["tracker"].startswith("https://")
    assert "landslide" in [tag.strip() for tag in meta["tags"].split(",")]
    assert meta.getboolean("experimental") is True
    assert meta.getboolean("deprecated") is False
    assert meta.getboolean("hasProcessingProvider") is True
    assert meta["version"] in meta["changelog"]
    assert (PLUGIN_DIR / meta["icon"]).is_file()


def test_metadata_values_survive_qgis_interpolating_parser():
    # QGIS reads metadata.txt with a plain ConfigParser, which chokes on a stray "%".
    parser = configparser.ConfigParser()
    with open(PLUGIN_DIR / "metadata.txt", encoding="utf-8") as f:
        parser.read_file(f)
    for key in parser["general"]:
        parser.get("general", key)


def test_icons_are_plain_files():
    assert QSvgRenderer(str(PLUGIN_DIR / "icons" / "icon.svg")).isValid()
    png = QImage(str(PLUGIN_DIR / "icons" / "icon.png"))
    assert (png.width(), png.height()) == (64, 64)
    from landslide_mapper.qgis_io.icon import plugin_icon
    assert not plugin_icon().isNull()
    assert not (PLUGIN_DIR / "resources.qrc").exists()     # Qt6 has no pyrcc


# --------------------------------------------------------------------------- light imports


HEAVY_OUTSIDE_QGIS = ("qgis", "PyQt5", "PyQt6", "sip", "onnxruntime", "rasterio", "torch")
HEAVY_INSIDE_QGIS = ("onnxruntime", "rasterio", "torch")


def _modules_after_import(module: str, forbidden: tuple, cwd: Path) -> list:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert result.returncode == 0, result.stderr
    return [m for m in result.stdout.strip().split(",") if m]


def test_package_import_is_light(tmp_path):
    # What the issue asks for, verbatim.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import landslide_mapper, sys; "
            "assert 'qgis' not in sys.modules and 'onnxruntime' not in sys.modules",
        ],
        check=True,
        cwd=tmp_path,
    )
    assert _modules_after_import("landslide_mapper", HEAVY_OUTSIDE_QGIS, tmp_path) == []


def test_plugin_module_does_not_load_inference_stack(tmp_path):
    assert _modules_after_import("landslide_mapper.plugin", HEAVY_INSIDE_QGIS, tmp_path) == []


# --------------------------------------------------------------------------- plugin life cycle


def test_class_factory_returns_plugin(qgis_iface):
    plugin = landslide_mapper.classFactory(qgis_iface)
    assert isinstance(plugin, LandslideMapperPlugin)
    assert plugin.iface is qgis_iface
    assert plugin.dock is None and plugin.action is None  # nothing built before initGui


def test_init_gui_adds_dock_menu_and_button_and_unload_removes_them(
    iface, qgis_parent, models_folder
):
    main_window = iface.mainWindow()
    assert plugin_docks(main_window) == []

    plugin = landslide_mapper.classFactory(iface)
    plugin.models_dir = models_folder
    plugin.initGui()

    docks = plugin_docks(main_window)
    assert len(docks) == 1
    dock = docks[0]
    assert isinstance(dock, QDockWidget)
    assert dock.windowTitle() == "Landslide Mapper"
    assert main_window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea

    combo = dock.checkpointCombo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert texts == ["ADSMS U-Net cascade (test), ONNX model", "y, ONNX model"]
    assert combo.itemData(0, Qt.ItemDataRole.ToolTipRole) == "Dummy model card for the dock test"
    assert [dock.tabs.tabText(i) for i in range(dock.tabs.count())] == ["Map", "Fine-tune", "Analyse", "Worker"]

    action = plugin.action
    assert action.text() == "Landslide Mapper"
    assert not action.icon().isNull()
    submenu = iface.completion.plugin_submenu(MENU_NAME)
    assert submenu is not None and action in submenu.actions()
    assert action in iface.completion.plugin_toolbar().actions()

    # The dock opens with the main window and the action closes and reopens it.
    qgis_parent.show()
    assert action.isChecked() and dock.isVisible()
    action.trigger()
    assert not action.isChecked() and not dock.isVisible()
    action.trigger()
    assert action.isChecked() and dock.isVisible()
    dock.close()  # the dock's own close button
    assert not action.isChecked()

    plugin.unload()
    process_deferred_deletes()
    assert sip.isdeleted(dock)
    assert plugin_docks(main_window) == []
    assert iface.completion.plugin_submenu(MENU_NAME) is None
    assert iface.completion.plugin_toolbar().actions() == []
    assert plugin.dock is None and plugin.action is None


def test_unload_after_init_gui_twice_in_a_row(iface, models_folder):
    """Reloading the plugin (as Plugin Reloader does) leaves exactly one dock each time."""
    main_window = iface.mainWindow()
    plugin = LandslideMapperPlugin(iface, models_dir=models_folder)
    for _ in range(2):
        plugin.initGui()
        assert len(plugin_docks(main_window)) == 1
        names = [a.objectName() for a in iface.completion.plugin_submenu(MENU_NAME).actions()]
        assert names == ["landslideMapperShowDock", "landslideMapperDiagnostics"]   # the dock, diagnostics
        plugin.unload()
        process_deferred_deletes()
        assert plugin_docks(main_window) == []
        assert iface.completion.plugin_submenu(MENU_NAME) is None

    plugin.unload()  # a second unload is harmless
    assert plugin_docks(main_window) == []


# --------------------------------------------------------------------------- dock contents


def test_dock_lists_models_with_their_cards(qgis_app, models_folder):
    (models_folder / "broken.onnx").write_bytes(b"")
    (models_folder / "broken.json").write_text("{not json", encoding="utf-8")
    (models_folder / "list.onnx").write_bytes(b"")
    (models_folder / "list.json").write_text("[1, 2]", encoding="utf-8")

    dock = LandslideMapperDock(models_folder)
    try:
        entries = {entry.path.name: entry for entry in dock.model_entries()}
        assert sorted(entries) == ["broken.onnx", "list.onnx", "x.onnx", "y.onnx"]
        assert entries["x.onnx"].name == "ADSMS U-Net cascade (test)"
        assert entries["x.onnx"].description == "Dummy model card for the dock test"
        assert entries["x.onnx"].card_problem is None
        assert entries["y.onnx"].name == "y"
        assert "No model card" in entries["y.onnx"].card_problem
        assert "cannot be read" in entries["broken.onnx"].card_problem
        assert "not a JSON object" in entries["list.onnx"].card_problem

        assert dock.checkpointCombo.count() == 4
        assert dock.checkpointCombo.itemData(0) == str(models_folder / "broken.onnx")
        assert dock.baseCheckpointCombo.count() == 0          # ONNX models cannot be fine-tuned
        dock.checkpointCombo.setCurrentIndex(dock.checkpointCombo.findData(str(models_folder / "y.onnx")))
        assert "No model card" in dock.modelCardView.toPlainText()
    finally:
        dock.deleteLater()
        process_deferred_deletes()


def test_dock_without_models_says_so_and_refreshes(qgis_app, tmp_path):
    missing = tmp_path / "nowhere"
    dock = LandslideMapperDock(missing)
    try:
        assert dock.models_dir == missing
        assert dock.model_entries() == []
        assert dock.checkpointCombo.count() == 0
        assert "No checkpoint found" in dock.modelCardView.toPlainText()

        missing.mkdir()
        (missing / "new.onnx").write_bytes(b"")
        dock.refreshButton.click()
        assert [e.name for e in dock.model_entries()] == ["new"]
        assert dock.checkpointCombo.currentText() == "new, ONNX model"
    finally:
        dock.deleteLater()
        process_deferred_deletes()


def test_dock_defaults_to_plugin_models_folder(qgis_app):
    assert DEFAULT_MODELS_DIR == PLUGIN_DIR / "models"
    dock = LandslideMapperDock()
    try:
        assert dock.models_dir == DEFAULT_MODELS_DIR
        assert dock.windowTitle() == "Landslide Mapper"
    finally:
        dock.deleteLater()
        process_deferred_deletes()


# --------------------------------------------------------------------------- core stays Qt-free


FORBIDDEN_IN_CORE = {"qgis", "PyQt4", "PyQt5", "PyQt6", "PySide", "PySide2", "PySide6", "sip"}
IMPORT_FUNCTIONS = {"__import__", "import_module"}


def forbidden_imports(source: str, filename: str = "<source>") -> list:
    """``(line, module)`` for every import of QGIS, Qt or sip in Python source."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id in IMPORT_FUNCTIONS)
                or (isinstance(node.func, ast.Attribute) and node.func.attr in IMPORT_FUNCTIONS)
            )
        ):
            modules = [node.args[0].value]
        found += [
            (node.lineno, name) for name in modules if name.split(".")[0] in FORBIDDEN_IN_CORE
        ]
    return sorted(found)


def test_import_checker_catches_qt_and_qgis_imports():
    source = (
        "import os\n"
        "from qgis.core import QgsVectorLayer\n"
        "import PyQt5.QtCore as qc\n"
        "from PySide6 import QtWidgets\n"
        "import json, sip\n"
        "from .qgis_free import helper\n"
        "def later():\n"
        "    import importlib\n"
        "    importlib.import_module('qgis.gui')\n"
        "    from PyQt6.QtCore import Qt\n"
    )
    assert forbidden_imports(source) == [
        (2, "qgis.core"),
        (3, "PyQt5.QtCore"),
        (4, "PySide6"),
        (5, "sip"),
        (9, "qgis.gui"),
        (10, "PyQt6.QtCore"),
    ]


def test_core_never_imports_qgis_or_qt():
    sources = sorted(CORE_DIR.rglob("*.py"))
    assert sources, f"no Python files under {CORE_DIR}"
    offenders = [
        f"{path.relative_to(PLUGIN_DIR)}:{line}: {module}"
        for path in sources
        for line, module in forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offenders, "core/ must stay free of QGIS and Qt:\n" + "\n".join(offenders)
