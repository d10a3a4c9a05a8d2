"""The worker interpreter: probing real interpreters, the requirement sets, and a real venv
created by EnvironmentSetupTask in QGIS' task manager (offline: a wheel built here)."""
from __future__ import annotations

import base64
import importlib.util
import hashlib
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsTask

from conftest import ROOT, run_task
from landslide_mapper.core.jobs.specs import TRAINING_MODULES
from landslide_mapper.tasks import worker_env
from landslide_mapper.tasks import worker_platform as wp
from landslide_mapper.tasks.environment_setup import EnvironmentSetupTask
from landslide_mapper.tasks.worker_env import (
    SETTINGS_KEY, Probe, candidate_pythons, configured_python,
    failure_hint, host_constraints, nvidia_gpu_present, probe, set_configured_python,
    setup_commands, worker_requirements)

SYSTEM_PYTHON = "/usr/bin/python3"


def tiny_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, written by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: test_worker_env\n"
                               "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


# --- probing ---------------------------------------------------------------------------
def test_probe_of_the_development_venv_is_ok():
    result = probe(sys.executable)
    assert result.ok, result.message()
    trains = importlib.util.find_spec("tensorflow") is not None     # not on Python 3.14 (QGIS 3.44)
    assert result.error is None and result.missing == ([] if trains else list(TRAINING_MODULES))
    assert result.can_train == trains
    assert result.versions["onnxruntime"] and result.versions["numpy"]
    if trains:
        assert result.versions["tensorflow"].startswith("2.")     # found without importing it
    assert "CPUExecutionProvider" in result.providers
    assert result.gpus is None                                # not asked
    assert result.python_version == ".".join(map(str, sys.version_info[:3]))
    assert "ONNX Runtime" in result.message()


def test_probe_of_the_system_python_names_what_it_lacks():
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"no {SYSTEM_PYTHON}")
    result = probe(SYSTEM_PYTHON)
    assert not result.ok and result.error is None
    assert {"onnxruntime", "tensorflow"} <= set(result.missing)
    assert "numpy" in result.versions and "numpy" not in result.missing
    message = result.message()
    assert message.startswith(f"{SYSTEM_PYTHON} lacks ")
    assert "onnxruntime" in message and "tensorflow" in message
    assert "create the worker environment" in message


def test_probe_of_a_missing_interpreter_is_an_error(tmp_path):
    missing = str(tmp_path / "no-python")
    result = probe(missing)
    assert not result.ok
    assert result.error.startswith("cannot be started")
    assert missing in result.message() and "cannot be started" in result.message()


def test_probe_of_something_that_is_not_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\nexit 3\n")
    fake.chmod(0o755)
    result = probe(str(fake))
    assert not result.ok and "exit code 3" in result.error


def test_message_separates_missing_broken_and_outdated():
    result = Probe(python="/x/python", missing=["onnxruntime", "cv2", "shapely"],
                   import_errors={"cv2": "ImportError: libGL.so.1"},
                   outdated={"shapely": "1.8.5 (needs >= 2.0)"})
    assert result.message() == ("/x/python lacks onnxruntime; cannot import cv2 (ImportError: libGL.so.1); "
                                "has shapely 1.8.5 (needs >= 2.0): create the worker environment "
                                "or choose another interpreter")


# --- finding interpreters ----------------------------------------------------------------
def test_configured_python_round_trips_and_comes_first(qgis_app, tmp_path, monkeypatch):
    monkeypatch.delenv(worker_env.ENV_PYTHON, raising=False)    # it would come before the setting
    before = configured_python()
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    try:
        set_configured_python(str(fake))
        assert configured_python() == str(fake)
        candidates = candidate_pythons()
        assert candidates[0] == str(fake)
        assert len(candidates) == len(set(candidates))
        assert all(os.path.exists(c) for c in candidates)
        set_configured_python(None)
        assert configured_python() is None
        assert str(fake) not in candidate_pythons()
    finally:
        set_configured_python(before)
    assert SETTINGS_KEY == "landslide_mapper/worker_python"


def test_default_env_dir_is_in_the_qgis_settings_folder(qgis_app):
    env_dir = worker_env.default_env_dir()
    assert env_dir == Path(QgsApplication.qgisSettingsDirPath()) / "landslide_mapper" / "worker-venv"
    assert ROOT not in env_dir.parents


def test_nvidia_gpu_present_reads_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpu_present() is False                      # no nvidia-smi at all
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0123)'\n")
    smi.chmod(0o755)
    assert nvidia_gpu_present() is True
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\n"
                   "exit 9\n")
    assert nvidia_gpu_present() is False


# --- requirements ------------------------------------------------------------------------
def test_worker_requirements_swap_in_the_cuda_builds_and_keep_the_pins():
    cpu, gpu = worker_requirements(gpu=False), worker_requirements(gpu=True)
    assert all("#" not in line and line == line.strip() and line for line in cpu)
    assert not any(line.split("==")[0] in ("pytest", "powerlaw", "numpy", "scipy") for line in cpu)
    tf_cpu = next(line for line in cpu if line.startswith("tensorflow-cpu=="))
    ort = next(line for line in cpu if line.startswith("onnxruntime=="))
    assert "protobuf==4.25.5" in cpu                          # inline comment stripped
    assert len(gpu) == len(cpu)
    assert "tensorflow[and-cuda]==" + tf_cpu.split("==")[1] in gpu
    assert "onnxruntime-gpu==1.20.2" in gpu and ort == "onnxruntime==1.20.1"   # no -gpu 1.20.1 on PyPI
    assert not any(line.startswith(("tensorflow-cpu", "onnxruntime==")) for line in gpu)
    assert [line for line in gpu if not line.startswith(("tensorflow[", "onnxruntime-gpu"))] == \
        [line for line in cpu if line not in (tf_cpu, ort)]


def test_host_constraints_pin_the_system_numpy_and_scipy():
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"no {SYSTEM_PYTHON}")
    real = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy, scipy; print(numpy.__version__, scipy.__version__)"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert host_constraints(SYSTEM_PYTHON) == [f"numpy=={real[0]}", f"scipy=={real[1]}"]


def test_setup_commands_refuse_the_running_and_the_base_interpreter(tmp_path):
    written = Path(sys.prefix) / worker_env.CONSTRAINTS_NAME      # exists where sys.prefix is a worker venv
    before = written.stat().st_mtime_ns if written.exists() else None
    for forbidden in (sys.prefix, "/", sys.base_prefix):
        with pytest.raises(ValueError, match="Refusing"):
            setup_commands(forbidden, base_python=SYSTEM_PYTHON)
    assert (written.stat().st_mtime_ns if written.exists() else None) == before
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("")
    with pytest.raises(ValueError, match="not a Python virtual environment"):
        setup_commands(stranger, base_python=SYSTEM_PYTHON)


def test_setup_commands_write_constraints_and_requirements(tmp_path):
    env_dir = tmp_path / "env"
    commands = setup_commands(env_dir, base_python=SYSTEM_PYTHON, gpu=True, pip_args=["--no-cache-dir"])
    python = str(env_dir / "bin" / "python")
    assert commands[0] == [SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(env_dir)]
    install = commands[1]
    assert install[:4] == [python, "-m", "pip", "install"] and install[-1] == "--no-cache-dir"
    constraints = Path(install[install.index("-c") + 1]).read_text().splitlines()
    requirements = Path(install[install.index("-r") + 1]).read_text().splitlines()
    assert Path(install[install.index("-c") + 1]).parent == env_dir
    assert [c for c in constraints if not c.startswith("#")] == host_constraints(SYSTEM_PYTHON)
    numpy = next(c.split("==")[1] for c in constraints if c.startswith("numpy=="))
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.split()
    pins = wp.pin_set(wp.current(tuple(map(int, version))), numpy)    # the host's set
    if version == ["3", "11"]:
        assert pins.lock_file == wp.LOCK_NUMPY1                       # Debian 12's full lock
    # Debian's python3-rasterio, -scipy and -matplotlib are there: nothing added for the host
    expected = (worker_requirements(gpu=True, path=ROOT / pins.lock_file) if pins.lock_file
                else wp.gpu_build(pins.requirements, wp.current()))
    assert [r for r in requirements if not r.startswith("#")] == expected
    assert commands[2] == [python, "-c", worker_env.LOCAL_PIP_CHECK]


def test_both_pinned_sets_pin_the_same_worker_and_never_the_hosts_numpy():
    """Each set holds every package the worker imports, pinned, and leaves numpy and scipy
    to the host (the constraints)."""
    imported = {"onnxruntime", "onnx", "shapely", "tqdm", "tensorflow-cpu", "keras", "albumentations",
                "opencv-python-headless", "dask", "distributed"}
    for path in (worker_env.REQUIREMENTS_FILE, worker_env.REQUIREMENTS_NUMPY2_FILE):
        lines = worker_requirements(path=path)
        names = {line.split("==")[0].lower() for line in lines}
        assert all("==" in line for line in lines), path
        assert imported <= names and not names & {"numpy", "scipy"}, path
        gpu = worker_requirements(gpu=True, path=path)
        assert any(line.startswith("tensorflow[and-cuda]==") for line in gpu), path


def _fake_distribution(site: Path, name: str, requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nRequires-Dist: {requires}\n")


def test_pip_check_judges_only_what_the_environment_installed(tmp_path):
    """A host package with a broken requirement (Debian 13's python3-typeshed has them) does
    not fail the set-up; a broken package inside the environment does."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env_dir)],
                   check=True, timeout=120)
    python = str(env_dir / "bin" / "python")
    host_site = tmp_path / "host_site"
    _fake_distribution(host_site, "types-hostonly", "flask-not-installed")
    env = {**os.environ, "PYTHONPATH": str(host_site)}        # stands in for the host's dist-packages
    outside = subprocess.run([python, "-c", worker_env.LOCAL_PIP_CHECK], capture_output=True, text=True,
                             env=env, timeout=120)
    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert "(the host's, not this environment's) types-hostonly 1.0 requires flask-not-installed" in outside.stdout
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _fake_distribution(site, "ours-broken", "missing-dependency")
    inside = subprocess.run([python, "-c", worker_env.LOCAL_PIP_CHECK], capture_output=True, text=True,
                            env=env, timeout=120)
    assert inside.returncode == 1
    assert "ours-broken 1.0 requires missing-dependency, which is not installed." in inside.stdout.splitlines()


def test_failure_hints():
    assert failure_hint("WARNING: Retrying ... NewConnectionError('<...>: Failed to establish a new "
                        "connection: [Errno -3] Temporary failure in name resolution')").startswith(
        "pip could not reach PyPI")
    assert failure_hint("ERROR: Could not install packages due to an OSError: [Errno 28] No space left "
                        "on device").startswith("The disk is full")
    assert failure_hint("all fine") == ""


# --- the task, for real --------------------------------------------------------------------
def test_setup_task_creates_a_venv_and_installs_offline(qgis_app, tmp_path):
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    env_dir = tmp_path / "worker-venv"
    task = EnvironmentSetupTask(env_dir, base_python=SYSTEM_PYTHON, requirements=["tinypkg==1.0"],
                                pip_args=["--no-index", "--find-links", str(wheels)])
    progress: list[float] = []
    run_task(task, while_running=lambda t: progress.append(t.progress()))
    assert task.status() == QgsTask.Complete, task.details
    assert task.error is None and task.progress() == 100.0
    assert progress == sorted(progress)
    assert task.python == str(env_dir / "bin" / "python") and Path(task.python).exists()
    check = subprocess.run([task.python, "-c", "import sys, tinypkg, numpy; print(tinypkg.VERSION, sys.prefix)"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["1.0", str(env_dir)]     # numpy comes from the system site
    assert any("Successfully installed tinypkg-1.0" in line for line in task.log_lines)
    assert any(line.startswith("No broken requirements") for line in task.log_lines)
    # re-probed: a venv of the system Python plus tinypkg is not a worker
    assert task.probe is not None and not task.probe.ok and "onnxruntime" in task.probe.missing


def test_setup_task_failure_names_the_command_and_removes_its_folder(qgis_app, tmp_path):
    env_dir = tmp_path / "worker-venv"
    task = EnvironmentSetupTask(env_dir, base_python=SYSTEM_PYTHON, requirements=["doesnotexist==9.9"],
                                pip_args=["--no-index"])
    run_task(task)
    assert task.status() == QgsTask.Terminated
    assert task.python is None
    assert task.failed_command[1:4] == ["-m", "pip", "install"]
    assert task.returncode not in (None, 0)
    message = task.error_message
    assert "pip install" in message and f"exit code {task.returncode}" in message
    assert "No matching distribution found for doesnotexist==9.9" in message
    assert "pip found no suitable release" in message          # the hint
    assert not env_dir.exists() and task.env_dir_removed


def test_setup_task_keeps_a_folder_that_existed_before(qgis_app, tmp_path):
    env_dir = tmp_path / "mine"
    env_dir.mkdir()
    task = EnvironmentSetupTask(env_dir, commands=[[sys.executable, "-c", "raise SystemExit(4)"]])
    run_task(task)
    assert task.status() == QgsTask.Terminated and task.returncode == 4
    assert env_dir.is_dir() and not task.env_dir_removed


def test_setup_task_refuses_the_running_interpreter(qgis_app):
    task = EnvironmentSetupTask(sys.prefix, base_python=SYSTEM_PYTHON)
    run_task(task)
    assert task.status() == QgsTask.Terminated
    assert "Refusing" in task.error_message
    assert Path(sys.prefix).is_dir() and not task.env_dir_removed


def test_cancel_stops_the_running_command_promptly(qgis_app, tmp_path):
    env_dir = tmp_path / "worker-venv"
    marker = tmp_path / "started"
    slow = [sys.executable, "-c",
            f"import pathlib, time; pathlib.Path({str(env_dir)!r}).mkdir(); "
            f"pathlib.Path({str(marker)!r}).touch(); time.sleep(30)"]
    task = EnvironmentSetupTask(env_dir, commands=[slow])
    cancelled_at: list[float] = []

    def cancel_once_started(t):
        if not cancelled_at and marker.exists():
            cancelled_at.append(time.monotonic())
            t.cancel()

    run_task(task, timeout=40, while_running=cancel_once_started)
    assert cancelled_at, "the command never started"
    assert time.monotonic() - cancelled_at[0] < 5
    assert task.status() == QgsTask.Terminated
    assert task.error_message.startswith("Cancelled")
    assert not env_dir.exists()                              # made by the task's command: removed
