"""The package's layers, read statically from every import (also those inside functions):
no import cycle anywhere, and each layer imports only the layers below it
(core ← qgis_io ← ui, processing_provider; tasks beside them)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "tasks", "qgis_io", "ui", "processing_provider")
# what each layer must never import
FORBIDDEN = {"core": ("qgis_io", "ui", "processing_provider", "tasks", "plugin"),
             "qgis_io": ("ui", "processing_provider", "plugin"),
             "tasks": ("ui", "processing_provider", "plugin")}


def modules() -> dict[str, Path]:
    found = {p.stem: p for p in ROOT.glob("*.py") if p.stem != "conftest"}
    for folder in FOLDERS:
        for p in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in p.parts:
                rel = p.relative_to(ROOT).with_suffix("")
                found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("landslide_mapper"):
                stem = node.module[len("landslide_mapper"):].lstrip(".")
            else:
                continue
            targets = [f"{stem}.{a.name}".lstrip(".") for a in node.names] + [stem]
        elif isinstance(node, ast.Import):
            targets = [a.name[len("landslide_mapper."):] for a in node.names if a.name.startswith("landslide_mapper.")]
        for t in targets:
            if t in known and t != name:
                out.add(t)
                break
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_imports_it_should():
    edges = graph()
    assert "core.mapping.job" in edges["core.jobs.cli"] or "core.mapping.job" in edges["core.jobs.runner"]
    assert "qgis_io.inputs" in edges["processing_provider.map_landslides"]
    assert "core.training.checkpoint" in edges["core.mapping.model"]           # an import inside a function counts


def test_no_module_imports_itself_back():
    assert cycles(graph()) == []


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [f"{name} imports {target}" for name, targets in graph().items() for target in targets
             if name.split(".")[0] in FORBIDDEN and target.split(".")[0] in FORBIDDEN[name.split(".")[0]]]
    assert wrong == []


def test_every_job_kind_has_a_runner():
    import importlib

    from landslide_mapper.core.jobs.specs import JOB_TYPES
    from landslide_mapper.core.jobs.runner import RUNNERS

    assert sorted(RUNNERS) == sorted(JOB_TYPES)
    for module, function in RUNNERS.values():
        assert callable(getattr(importlib.import_module(module, "landslide_mapper.core.jobs"), function))


def test_the_core_tests_need_no_qgis(tmp_path):
    """tests/core collects with QGIS and Qt unimportable (and without pytest-qgis)."""
    import subprocess
    import sys

    script = tmp_path / "collect.py"
    script.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'sip'):\n"
        "            raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pytest\n"
        f"sys.exit(pytest.main([{str(ROOT / 'tests' / 'core')!r}, '--collect-only', '-q', '-p', 'no:pytest_qgis',"
        " '-p', 'no:cacheprovider']))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout
