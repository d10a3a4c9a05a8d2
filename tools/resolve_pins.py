"""Prove that the worker's pins install on every supported platform and Python.

For each pair of tasks/worker_platform.supported_platforms() and host numpy major (1 for
Python 3.9–3.12, 2 for 3.12–3.14) this asks pip to resolve, binary wheels only, what the
plugin's environment set-up would install there: the pin set, the host packages a QGIS
Python may lack (rasterio, scipy, matplotlib) and the host's numpy as a constraint.
pip's own ``--platform``/``--python-version`` pick the wheels; pip evaluates dependency
markers for the running interpreter, though, so the target's marker values are put in
place first (otherwise, e.g., tensorflow-cpu's Windows dependencies would be skipped).

    python tools/resolve_pins.py [--jobs N] [--only windows,macos]   # prints a Markdown table

Needs PyPI (or a mirror pip is configured for); exit status 1 when a pair fails.
tests/core/test_worker_platform.py runs it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build" / "pkgroot"))
sys.path.insert(0, str(ROOT.parent))

# Run by the child: pip's resolver with the target's PEP 508 marker values.
_PIP_WITH_MARKERS = r"""
import json, sys
spec = json.loads(sys.argv[1])
import pip._vendor.packaging.markers as markers
_default = markers.default_environment
markers.default_environment = lambda: dict(_default(), **spec["markers"])
from pip._internal.cli.main import main
sys.exit(main(spec["args"]))
"""


def _platform_module():
    try:
        from landslide_mapper.tasks import worker_platform
    except ImportError:     # a checkout not named landslide_mapper: load the file itself
        import importlib.util

        path = ROOT / "tasks" / "worker_platform.py"
        spec = importlib.util.spec_from_file_location("worker_platform", path)
        worker_platform = importlib.util.module_from_spec(spec)
        sys.modules["worker_platform"] = worker_platform
        spec.loader.exec_module(worker_platform)
    return worker_platform


def rows():
    """(platform, numpy major) pairs to resolve."""
    wp = _platform_module()
    out = []
    for plat in wp.supported_platforms():
        if plat.python <= (3, 12):
            out.append((plat, 1))
        if plat.python >= (3, 12):
            out.append((plat, 2))
    return out


def requirements_for(plat, numpy_major: int) -> tuple[list[str], "object"]:
    wp = _platform_module()
    pins = wp.pin_set(plat, f"{numpy_major}.0")
    lines = pins.requirements
    if pins.lock_file:
        lines = wp.requirement_lines(ROOT / pins.lock_file)
    numpy = "numpy<2" if numpy_major == 1 else "numpy>=2"
    return [*lines, *wp.HOST_PACKAGES.values(), numpy], pins


def resolve(plat, numpy_major: int, python: str = sys.executable) -> dict:
    """pip's answer for one pair: {"ok", "packages" or "error", "pin_set", "training"}."""
    wp = _platform_module()
    requirements, pins = requirements_for(plat, numpy_major)
    base = {"platform": plat.label, "numpy": numpy_major, "pin_set": pins.name,
            "training": pins.training_refusal is None and pins.mapping_refusal is None}
    if pins.mapping_refusal:
        return dict(base, ok=True, packages={}, refused=pins.mapping_refusal)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--target",
                str(Path(tmp) / "target"), "--python-version", f"{plat.python[0]}.{plat.python[1]}",
                "--implementation", "cp", "--report", str(report), "--quiet",
                "--disable-pip-version-check", "--no-input"]
        for tag in wp.pip_platform_tags(plat):
            args += ["--platform", tag]
        proc = subprocess.run([python, "-c", _PIP_WITH_MARKERS,
                               json.dumps({"markers": wp.marker_environment(plat), "args": args + requirements})],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or "conflict" in ln.lower()]
            return dict(base, ok=False, error=" | ".join(errors[-6:]) or proc.stderr[-800:])
        installed = json.loads(report.read_text())["install"]
    return dict(base, ok=True, packages={wp.canonical(i["metadata"]["name"]): i["metadata"]["version"]
                                         for i in installed})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--only", default="", help="comma-separated operating systems")
    parser.add_argument("--json", action="store_true", help="print one JSON object per pair")
    args = parser.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    todo = [(p, n) for p, n in rows() if not only or p.os in only]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda pair: resolve(*pair), todo))
    if args.json:
        for result in results:
            print(json.dumps(result))
    else:
        print("| platform | host numpy | resolves | training | onnxruntime | tensorflow | keras |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            pk = r.get("packages", {})
            tf = pk.get("tensorflow-cpu") or pk.get("tensorflow") or "—"
            state = "yes" if r["ok"] and not r.get("refused") else ("refused" if r.get("refused") else "**NO**")
            print(f"| {r['platform']} | {r['numpy']}.x | {state} | {'yes' if r['training'] else 'no'} | "
                  f"{pk.get('onnxruntime', pk.get('onnxruntime-gpu', '—'))} | {tf} | {pk.get('keras', '—')} |")
        for r in results:
            if not r["ok"]:
                print(f"\n{r['platform']} numpy {r['numpy']}.x ({r['pin_set']}): {r['error']}", file=sys.stderr)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
