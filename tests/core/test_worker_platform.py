"""The worker's platform decisions (tasks/worker_platform.py) for Windows, macOS and Linux,
asked from this machine; real process stopping here; and pip's resolution of every
platform's pins (tools/resolve_pins.py), which needs PyPI."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from conftest import ROOT
from landslide_mapper.tasks import worker_platform as wp
from landslide_mapper.tasks.worker_platform import LINUX, MACOS, WINDOWS, Platform

WIN = Platform(WINDOWS, "x86_64", (3, 12))
MAC_ARM = Platform(MACOS, "arm64", (3, 11))
MAC_INTEL = Platform(MACOS, "x86_64", (3, 11))
DEBIAN12 = Platform(LINUX, "x86_64", (3, 11))


# --- paths -------------------------------------------------------------------------------
def test_venv_layout_per_platform():
    assert wp.venv_python(r"C:\Users\ana\worker", WIN) == PureWindowsPath(r"C:\Users\ana\worker\Scripts\python.exe")
    assert wp.venv_python("/Users/ana/worker", MAC_ARM) == PurePosixPath("/Users/ana/worker/bin/python")
    assert wp.venv_python("/home/ana/worker", DEBIAN12) == PurePosixPath("/home/ana/worker/bin/python")
    assert wp.dev_venv_python(r"C:\plugins\landslide_mapper", WIN) == \
        PureWindowsPath(r"C:\plugins\landslide_mapper\.venv\Scripts\python.exe")


def test_base_python_is_the_one_qgis_runs_on():
    """OSGeo4W/standalone installer, the macOS bundle and Debian: sys.prefix of QGIS' Python."""
    osgeo4w = wp.base_python_candidates(WIN, [r"C:\OSGeo4W\apps\Python312"], lambda name: None)
    assert osgeo4w == [PureWindowsPath(r"C:\OSGeo4W\apps\Python312\python.exe")]
    bundle = "/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.11"
    mac = wp.base_python_candidates(MAC_ARM, [bundle, bundle], lambda name: "/usr/local/bin/python3"
                                    if name == "python3" else None)
    assert mac == [PurePosixPath(bundle + "/bin/python3.11"), PurePosixPath(bundle + "/bin/python3"),
                   PurePosixPath("/usr/local/bin/python3")]           # each once, the bundle's first
    debian = wp.base_python_candidates(DEBIAN12, ["/usr"], lambda name: f"/usr/bin/{name}")
    assert debian[:2] == [PurePosixPath("/usr/bin/python3.11"), PurePosixPath("/usr/bin/python3")]
    on_path = wp.base_python_candidates(WIN, [""], lambda name: r"C:\Python312\python.exe" if name == "python.exe"
                                        else None)
    assert on_path == [PureWindowsPath(r"C:\Python312\python.exe")]


def test_default_base_python_here_exists():
    python = wp.default_base_python()
    assert PurePosixPath(python).name.startswith("python")
    assert subprocess.run([python, "-c", "import sys"], timeout=60).returncode == 0


# --- processes ---------------------------------------------------------------------------
def test_start_options_per_platform():
    win = wp.popen_options(WIN)
    assert win == {"creationflags": 0x08000000 | 0x00000200}          # no console, own group
    assert "start_new_session" not in win
    if sys.platform.startswith("win"):                                 # the constants subprocess has there
        assert win["creationflags"] == subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
    assert wp.popen_options(MAC_ARM) == wp.popen_options(DEBIAN12) == {"start_new_session": True}
    assert wp.kill_tree_command(4242, WIN) == ["taskkill", "/PID", "4242", "/T", "/F"]
    assert wp.kill_tree_command(4242, DEBIAN12) is None


def _child(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            **wp.popen_options(wp.current()))
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_stop_tree_asks_politely_then_kills_what_ignores_it():
    polite = _child("import time; print('ready', flush=True); time.sleep(60)")
    start = time.monotonic()
    wp.stop_tree(polite, grace_s=10)
    polite.stdout.close()
    assert polite.poll() is not None and time.monotonic() - start < 5
    stubborn = _child("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(60)")
    start = time.monotonic()
    wp.stop_tree(stubborn, grace_s=1)
    stubborn.stdout.close()
    assert stubborn.poll() is not None and 0.9 < time.monotonic() - start < 10


def test_stop_tree_without_politeness_waits_for_the_grace_period_then_kills():
    """The worker gets its cancel line from the caller; stop_tree only waits, then kills."""
    proc = _child("import time; print('ready', flush=True); time.sleep(60)")
    start = time.monotonic()
    wp.stop_tree(proc, grace_s=0.5, polite=False)
    proc.stdout.close()
    assert proc.poll() is not None and time.monotonic() - start >= 0.5


# --- pins --------------------------------------------------------------------------------
def _names(lines):
    return {wp.canonical(line.split("==")[0].split("[")[0].split(">")[0]): line for line in lines}


def test_the_tested_linux_hosts_get_their_full_locks():
    assert wp.pin_set(DEBIAN12, "1.24.2").lock_file == wp.LOCK_NUMPY1                 # QGIS 3.22
    assert wp.pin_set(Platform(LINUX, "x86_64", (3, 13)), "2.2.4").lock_file == wp.LOCK_NUMPY2   # QGIS 3.40
    assert wp.pin_set(Platform(LINUX, "x86_64", (3, 13)), None).lock_file == wp.LOCK_NUMPY2


@pytest.mark.parametrize("plat, numpy, tensorflow", [
    (WIN, "1.26.4", "tensorflow-cpu==2.17.1"),                         # OSGeo4W with numpy 1
    (WIN, "2.1.3", "tensorflow-cpu==2.20.0"),
    (Platform(LINUX, "x86_64", (3, 12)), "1.26.4", "tensorflow-cpu==2.17.1"),    # Ubuntu 24.04
    (Platform(LINUX, "x86_64", (3, 11)), "2.0.2", "tensorflow-cpu==2.20.0"),
    (MAC_ARM, "1.26.4", "tensorflow==2.17.1"),                         # no tensorflow-cpu on macOS
    (Platform(MACOS, "arm64", (3, 13)), "2.2.0", "tensorflow==2.20.0"),
    (MAC_INTEL, "1.26.4", "tensorflow==2.16.2"),                       # the last Intel macOS build
    (Platform(WINDOWS, "x86_64", (3, 9)), "1.24.0", "tensorflow-cpu==2.17.1"),
])
def test_pins_per_platform_python_and_numpy(plat, numpy, tensorflow):
    pins = wp.pin_set(plat, numpy)
    names = _names(pins.requirements)
    assert pins.lock_file is None and pins.training_refusal is None and pins.mapping_refusal is None
    assert tensorflow in pins.training
    assert {"onnxruntime", "onnx", "shapely", "tqdm", "dask", "distributed"} <= set(_names(pins.mapping))
    assert {"keras", "albumentations", "opencv-python-headless"} <= set(names)
    assert all("==" in line for line in pins.requirements)
    assert not {"numpy", "scipy"} & set(names)                         # the host's, never ours
    if plat.python == (3, 9):
        assert "onnxruntime==1.19.2" in pins.mapping                   # the last for Python 3.9


def test_platforms_without_tensorflow_map_but_refuse_training_with_a_reason():
    py314 = wp.pin_set(Platform(LINUX, "x86_64", (3, 14)), "2.3.4")    # Debian sid, QGIS 3.44
    assert py314.training == [] and "Python 3.14" in py314.training_refusal
    assert "onnxruntime==1.24.1" in py314.mapping                      # the first with 3.14 wheels
    intel = wp.pin_set(MAC_INTEL, "2.0.0")
    assert intel.training == [] and "Intel macOS" in intel.training_refusal and intel.mapping
    assert wp.pin_set(Platform(MACOS, "x86_64", (3, 14)), "2.3").mapping_refusal
    assert "3.8" in wp.pin_set(Platform(LINUX, "x86_64", (3, 8)), "1.24").mapping_refusal


def test_cuda_builds_only_where_they_exist():
    lines = ["tensorflow-cpu==2.17.1", "onnxruntime==1.20.1", "keras==3.6.0"]
    assert wp.gpu_build(lines, DEBIAN12) == ["tensorflow[and-cuda]==2.17.1", "onnxruntime-gpu==1.20.2", "keras==3.6.0"]
    assert wp.gpu_build(lines, WIN) == ["tensorflow-cpu==2.17.1", "onnxruntime-gpu==1.20.2", "keras==3.6.0"]
    assert wp.gpu_build(lines, MAC_ARM) == lines


def test_pip_sees_each_platform_as_itself():
    assert wp.pip_platform_tags(WIN) == ["win_amd64"]
    assert all("arm64" in t or "universal2" in t for t in wp.pip_platform_tags(MAC_ARM))
    assert "macosx_10_15_x86_64" in wp.pip_platform_tags(MAC_INTEL)
    assert wp.pip_platform_tags(DEBIAN12)[0] == "manylinux_2_28_x86_64"
    markers = wp.marker_environment(WIN)
    assert (markers["sys_platform"], markers["platform_system"]) == ("win32", "Windows")
    assert markers["python_version"] == "3.12"
    assert wp.marker_environment(MAC_ARM)["platform_machine"] == "arm64"
    assert len(wp.supported_platforms()) == 4 * 6


# --- the cross-platform resolution -------------------------------------------------------
def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _pypi_reachable(), reason="pypi.org cannot be reached: the cross-platform "
                                                  "resolution needs PyPI (CI and ./dev.sh setup have it)")
def test_every_platform_and_python_resolves_its_pins():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "resolve_pins.py"), "--json", "--jobs", "4"],
                          capture_output=True, text=True, timeout=1500)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [f"{r['platform']} numpy {r['numpy']}: {r['error']}" for r in results if not r["ok"]]
    assert not failed, "\n".join(failed)
    assert len(results) == 4 * 7                  # numpy 1 for Python 3.9–3.12, numpy 2 for 3.12–3.14
    by_row = {(r["platform"], r["numpy"]): r for r in results}
    for r in results:
        packages = r["packages"]
        if r.get("refused"):
            continue
        assert packages.get("onnxruntime"), r["platform"]
        assert packages["numpy"].startswith("1." if r["numpy"] == 1 else "2."), r["platform"]
        tf = packages.get("tensorflow-cpu") or packages.get("tensorflow")
        assert bool(tf) == r["training"], r["platform"]
    assert by_row[("windows-x86_64 Python 3.12", 1)]["packages"]["tensorflow-intel"] == "2.17.1"   # its markers
    assert by_row[("linux-x86_64 Python 3.14", 2)]["training"] is False
