"""QGIS 4 (Qt6) readiness, checked statically on the plugin's runtime code (no QGIS 4 build
can be installed here): no PyQt5-only forms, Qt and QGIS enums written scoped, the QGIS
enums that moved into ``Qgis`` only through qgis_compat.py, icons as plain files, and
metadata that lets QGIS 4 load the plugin."""
from __future__ import annotations

import ast
import configparser
import importlib.util
import re

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("package_plugin", ROOT / "tools" / "package_plugin.py")
package_plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(package_plugin)

RUNTIME_FILES = sorted(
    [ROOT / name for name in package_plugin.TOP_FILES if name.endswith(".py")]
    + [p for folder in package_plugin.PACKAGES for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts])
GUI_FILES = [p for p in RUNTIME_FILES if p.parts[-2] != "core" and p.name != "qgis_compat.py"]

# PyQt5-only spellings (Qt6 removed them or renamed them)
PYQT5_ONLY = [
    (re.compile(r"\.exec_\("), "exec_() is exec() in Qt6"),
    (re.compile(r"^\s*(from|import)\s+(PyQt5|PyQt6|sip)\b", re.M), "import Qt only through qgis.PyQt"),
    (re.compile(r"\bQRegExp\b|\bQDesktopWidget\b|\bQGLWidget\b|\bMidButton\b"), "removed in Qt6"),
    (re.compile(r"[\"']:/plugins/|\bqInitResources\b|\bfrom \. import resources\b"),
     "compiled Qt resources need pyrcc, which Qt6 lacks: load icons from files"),
]
# QGIS enums that QGIS 3.30–3.38 moved into Qgis (renaming members): only through qgis_compat
MOVED_QGIS_ENUMS = re.compile(
    r"\bQgsProcessing\.(SourceType|Type[A-Z]\w*)\b|\bQgsWkbTypes\.[A-Z]\w*|\bQgsMapLayerProxyModel\.(Filter|\w+Layer)\b"
    r"|\bQgsProcessingParameterNumber\.(Type|Integer|Double)\b|\bQgsProcessingParameterFile\.(Behavior|File|Folder)\b"
    r"|\bQgsProcessingParameterDefinition\.(Flag|Flag[A-Z]\w*)\b|\bQgsColorRampShader\.(Type|Interpolated|Discrete|Exact)\b"
    r"|\bQVariant\.[A-Z]\w*|\bQMetaType\.[A-Z]\w*")


def _code_only(source: str) -> str:
    """The source without comments and string literals' contents that are docs."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):     # blank docstrings
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                for i in range(first.lineno - 1, first.end_lineno):
                    lines[i] = ""
    return "\n".join(line.split("#", 1)[0] if "#" in line and '"' not in line.split("#", 1)[0]
                     and "'" not in line.split("#", 1)[0] else line for line in lines)


def test_the_runtime_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in RUNTIME_FILES}
    assert {"plugin.py", "qgis_compat.py", "ui/dock.py", "tasks/worker_platform.py",
            "processing_provider/map_landslides.py"} <= names


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_pyqt5_only_forms(path):
    code = _code_only(path.read_text(encoding="utf-8"))
    problems = [f"{why}: {m.group(0).strip()}" for pattern, why in PYQT5_ONLY for m in pattern.finditer(code)]
    assert not problems, problems


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_moved_qgis_enums_only_through_qgis_compat(path):
    code = _code_only(path.read_text(encoding="utf-8"))
    found = sorted({m.group(0) for m in MOVED_QGIS_ENUMS.finditer(code)})
    assert not found, f"use qgis_compat for {found}"


def _enum_owner_modules():
    from qgis.PyQt import QtCore, QtGui, QtWidgets
    import qgis.core
    import qgis.gui
    return [QtCore, QtGui, QtWidgets, qgis.core, qgis.gui]


def _is_enum_member(value) -> bool:
    kind = type(type(value))
    return kind.__name__ in ("enumtype", "EnumType", "EnumMeta") and not isinstance(value, type)


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_qt_and_qgis_enums_are_scoped(qgis_app, path):
    """``Qt.AlignLeft`` fails in PyQt6; ``Qt.AlignmentFlag.AlignLeft`` works in both. An
    attribute ``Class.Member`` whose value is a member of an enum nested in ``Class`` is
    the unscoped form (judged with this QGIS' own classes)."""
    modules = _enum_owner_modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    unscoped = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr[:1].isupper()):
            continue
        owner = next((getattr(m, node.value.id) for m in modules if hasattr(m, node.value.id)), None)
        if not isinstance(owner, type):
            continue
        value = getattr(owner, node.attr, None)
        if value is not None and _is_enum_member(value):
            unscoped.append(f"line {node.lineno}: {node.value.id}.{node.attr} -> "
                            f"{node.value.id}.{type(value).__name__}.{node.attr}")
    assert not unscoped, unscoped


def test_metadata_lets_qgis_4_load_the_plugin():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    assert general["supportsQt6"] == "True"
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["qgisMinimumVersion"] == "3.22"


def test_no_compiled_resources():
    assert not list(ROOT.glob("*.qrc")) and not (ROOT / "resources.py").exists()
    assert (ROOT / "icons" / "icon.svg").is_file()


def test_the_checker_catches_what_it_should():
    """The patterns are not vacuous: each one finds its PyQt5 form."""
    sample = "box.exec_()\nfrom PyQt5.QtCore import Qt\nQIcon(':/plugins/x/icon.svg')\n"
    assert all(p.search(_code_only(sample)) for p, _ in PYQT5_ONLY[:2]) and PYQT5_ONLY[3][0].search(sample)
    assert MOVED_QGIS_ENUMS.search("QgsProcessing.TypeVectorPolygon") and MOVED_QGIS_ENUMS.search("QVariant.Double")
    from qgis.PyQt.QtCore import Qt
    assert _is_enum_member(Qt.AlignLeft) and not _is_enum_member(Qt.AlignmentFlag)
