"""Every platform decision about the worker Python, in one place and free of QGIS.

Windows, macOS and Linux differ in where a usable base Python lives, in a venv's layout,
in how a child process is started (no console window on Windows) and stopped (no process
groups or SIGTERM on Windows), and in which wheels exist for the worker's packages. Each of
those choices is a pure function of a :class:`Platform` here, so the unit tests can ask
about every platform from any one machine; ``worker_env`` and ``worker_process`` only call
these functions with :func:`current`.

Cancelling a job does not rely on signals: the worker reads a ``cancel`` line (or the end
of its stdin) and stops at its next progress point, cleaning up on every platform;
:func:`stop_tree` is the last resort after a grace period.
"""
from __future__ import annotations

import os
import platform as _platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Callable, Optional, Sequence

WINDOWS, MACOS, LINUX = "windows", "macos", "linux"
SUPPORTED_PYTHONS = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14))

# The worker's control protocol on stdin (core/jobs/cli.py ``run-job --control``): the job as
# one JSON line, then this line (or the end of stdin) asks the job to stop and clean up.
CANCEL_LINE = "cancel"


@dataclass(frozen=True)
class Platform:
    """Where a worker Python runs: operating system, machine and Python version."""

    os: str                          # WINDOWS, MACOS or LINUX
    machine: str = "x86_64"          # x86_64 or arm64
    python: tuple[int, int] = (3, 11)

    @property
    def label(self) -> str:
        return f"{self.os}-{self.machine} Python {self.python[0]}.{self.python[1]}"


def _os_name(sys_platform: str) -> str:
    if sys_platform.startswith("win"):
        return WINDOWS
    if sys_platform == "darwin":
        return MACOS
    return LINUX


def _machine_name(machine: str) -> str:
    return "arm64" if machine.lower() in ("arm64", "aarch64") else "x86_64"


def current(python: Optional[Sequence[int]] = None) -> Platform:
    """This machine, with this interpreter's Python version unless ``python`` is given (the
    version of another interpreter, e.g. the worker's)."""
    version = tuple(python or sys.version_info[:2])[:2]
    return Platform(_os_name(sys.platform), _machine_name(_platform.machine()), version)


# --- paths -------------------------------------------------------------------------------
def _path_type(plat: Platform) -> type[PurePath]:
    return PureWindowsPath if plat.os == WINDOWS else PurePosixPath


def venv_python(env_dir, plat: Platform) -> PurePath:
    """The interpreter inside a venv: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere."""
    root = _path_type(plat)(str(env_dir))
    return root / "Scripts" / "python.exe" if plat.os == WINDOWS else root / "bin" / "python"


def base_python_candidates(plat: Platform, prefixes: Sequence[str], which: Callable[[str], Optional[str]]
                           ) -> list[PurePath]:
    """Base interpreters to create the worker venv from, best first (existence not checked).

    Inside QGIS ``sys.executable`` is QGIS itself, but ``sys.prefix`` is the Python QGIS
    runs on: OSGeo4W and the standalone installer keep it in ``apps\\Python3xx\\python.exe``,
    the macOS bundle in its framework's ``bin/python3.x``, Linux in ``/usr/bin``. That Python
    has the GDAL bindings and numpy QGIS was built with, which the venv reuses; ``python3``
    (``python`` on Windows) on PATH comes after it."""
    path = _path_type(plat)
    major, minor = plat.python
    found: list[PurePath] = []
    for prefix in prefixes:
        if not prefix:
            continue
        root = path(prefix)
        if plat.os == WINDOWS:
            found.append(root / "python.exe")
        else:
            found += [root / "bin" / f"python{major}.{minor}", root / "bin" / f"python{major}"]
    for name in (("python.exe", "python3.exe") if plat.os == WINDOWS else (f"python{major}", "python3")):
        hit = which(name)
        if hit:
            found.append(path(hit))
    unique: list[PurePath] = []
    for candidate in found:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def default_base_python(plat: Optional[Platform] = None) -> str:
    """The first existing base interpreter for this machine (see base_python_candidates),
    or ``python3``/``python`` for the error message to name."""
    plat = plat or current()
    prefixes = [sys.base_prefix, sys.prefix, sys.exec_prefix]
    for candidate in base_python_candidates(plat, prefixes, shutil.which):
        if os.path.isfile(str(candidate)):
            return str(candidate)
    return "python" if plat.os == WINDOWS else "python3"


def dev_venv_python(plugin_dir, plat: Platform) -> PurePath:
    """The checkout's development venv (./dev.sh makes it), a worker candidate."""
    return venv_python(_path_type(plat)(str(plugin_dir)) / ".venv", plat)


# --- starting and stopping processes -----------------------------------------------------
CREATE_NEW_PROCESS_GROUP = 0x00000200      # subprocess's Windows constants, spelt out so that
CREATE_NO_WINDOW = 0x08000000              # the POSIX tests can check them too


def popen_options(plat: Platform) -> dict:
    """Popen keyword arguments for a background child: on Windows no console window and its
    own process group (Ctrl+C in QGIS' console never reaches it); elsewhere its own session,
    so that stopping it can reach its children too."""
    if plat.os == WINDOWS:
        return {"creationflags": CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def kill_tree_command(pid: int, plat: Platform) -> Optional[list[str]]:
    """The command that kills ``pid`` and its children on Windows (``taskkill /T /F``);
    None elsewhere, where the process group is killed directly."""
    if plat.os == WINDOWS:
        return ["taskkill", "/PID", str(pid), "/T", "/F"]
    return None


def stop_tree(proc: subprocess.Popen, grace_s: float, plat: Optional[Platform] = None,
              polite: bool = True) -> None:
    """Stop ``proc`` (started with :func:`popen_options`) and its children.

    The worker is asked first through its own protocol by the caller, so ``polite`` only
    matters for children that have none (pip): on POSIX they get SIGTERM as a group; on
    Windows there is no such request. After ``grace_s`` the whole tree is killed
    (``taskkill /T /F`` on Windows, SIGKILL to the group elsewhere)."""
    plat = plat or current()
    if proc.poll() is not None:
        return
    if polite and plat.os != WINDOWS:
        _signal_group(proc.pid, "SIGTERM")
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        return
    command = kill_tree_command(proc.pid, plat)
    if command is not None:
        try:
            subprocess.run(command, capture_output=True, timeout=30, **popen_options(plat))
        except (OSError, subprocess.SubprocessError):
            pass
        if proc.poll() is None:
            proc.kill()
    else:
        _signal_group(proc.pid, "SIGKILL")
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pid: int, name: str) -> None:
    import signal

    try:
        os.killpg(pid, getattr(signal, name))
    except (ProcessLookupError, PermissionError, OSError):
        pass


# --- pinned packages ---------------------------------------------------------------------
@dataclass
class PinSet:
    """What pip installs into the worker venv for one platform, Python and host numpy."""

    name: str
    mapping: list[str]                 # ONNX Runtime and friends: mapping needs only these
    training: list[str] = field(default_factory=list)    # TensorFlow, Keras, augmentation
    training_refusal: Optional[str] = None   # why training is impossible here, if it is
    mapping_refusal: Optional[str] = None    # why even mapping is impossible here
    lock_file: Optional[str] = None     # a full lock (every package) used instead, if any

    @property
    def requirements(self) -> list[str]:
        return self.mapping + self.training


# Packages the worker imports that a QGIS Python usually has already (Debian's python3-*
# packages, OSGeo4W, the macOS bundle). They are installed only where the host lacks them,
# as ranges, not pins: they must fit the host's own numpy, which pip is never allowed to
# change (worker_env passes it as a constraint).
HOST_PACKAGES = {"rasterio": "rasterio>=1.3.9,<1.5", "scipy": "scipy>=1.9", "matplotlib": "matplotlib>=3.5"}

# Mapping: ONNX Runtime 1.19 is the last release for Python 3.9 and 1.24 the first for 3.14;
# onnx 1.17 (the one tested with TensorFlow 2.17) has no 3.13 wheels; shapely 2.1 is the
# first with 3.14 wheels.
# Dask for distributed mapping (core/mapping/cluster.py): 2024.8 is the last release for Python 3.9.
_DASK = ["dask==2026.8.0", "distributed==2026.8.0"]
_MAPPING = {
    "py39": ["onnxruntime==1.19.2", "onnx==1.17.0", "shapely==2.0.7", "tqdm==4.67.1",
             "dask==2024.8.0", "distributed==2024.8.0"],
    "py310": ["onnxruntime==1.20.1", "onnx==1.17.0", "shapely==2.0.6", "tqdm==4.67.1", *_DASK],
    "py313": ["onnxruntime==1.20.1", "onnx==1.23.2", "shapely==2.1.2", "tqdm==4.67.1", *_DASK],
    "py314": ["onnxruntime==1.24.1", "onnx==1.23.2", "shapely==2.1.2", "tqdm==4.67.1", *_DASK],
}
# Training with TensorFlow: 2.17 is the last release that accepts numpy 1.x below 1.26 and
# pins protobuf below 5; 2.20 the release for numpy 2 and Python 3.13. TensorFlow's
# Linux and Windows CPU build is ``tensorflow-cpu``; on macOS the plain ``tensorflow``
# wheel is the CPU (arm64: Metal-less) build. Intel Macs stopped at 2.16.
_TRAINING_NUMPY1 = ["keras==3.6.0", "protobuf==4.25.5", "albumentations==1.3.1",
                    "opencv-python-headless==4.10.0.84", "scikit-image==0.22.0", "scikit-learn==1.5.2"]
_TRAINING_NUMPY2 = ["keras==3.15.1", "albumentations==1.4.24", "opencv-python-headless==4.12.0.88"]
_NO_TF_314 = ("TensorFlow publishes no release for Python 3.14, the Python of this QGIS "
              "(QGIS 3.44 on current Linux distributions): mapping works, training and "
              "fine-tuning need a worker Python 3.9–3.13 with TensorFlow.")
_NO_TF_INTEL_MAC = ("TensorFlow stopped publishing Intel macOS builds after 2.16, which needs "
                    "numpy 1 and Python 3.9–3.12: mapping works, training and fine-tuning need "
                    "such a worker Python, or an Apple-silicon Mac.")

# The two full locks tested end to end (./dev.sh on Debian 12, tools/qgis_debian.sh trixie on Debian 13)
LOCK_NUMPY1 = "requirements-worker.txt"           # Linux, Python 3.11, numpy 1.x
LOCK_NUMPY2 = "requirements-worker-numpy2.txt"    # Linux, Python 3.13, numpy 2.x


def version_tuple(version: Optional[str]) -> tuple[int, ...]:
    """``"2.1.3rc1"`` -> (2, 1, 3): the leading numbers of a version string."""
    parts = []
    for piece in (version or "").split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def requirement_lines(path) -> list[str]:
    """The requirement lines of a requirements/lock file, comments and blanks dropped."""
    with open(path, encoding="utf-8") as f:
        lines = [raw.split("#", 1)[0].strip() for raw in f]
    return [line for line in lines if line]


def pin_set(plat: Platform, numpy_version: Optional[str]) -> PinSet:
    """The packages for a worker venv on ``plat`` whose host Python has ``numpy_version``.

    On Linux with the Python of a tested full lock (Debian 12's 3.11 with numpy 1, Debian
    13's 3.13 with numpy 2) that lock is used; elsewhere the direct pins below, whose joint
    resolution for every platform and Python is checked by tools/resolve_pins.py (a test)."""
    py, numpy2 = plat.python, version_tuple(numpy_version)[:1] >= (2,)
    if plat.os == LINUX and plat.machine == "x86_64":
        if py == (3, 11) and not numpy2:
            return PinSet("linux-py311-numpy1 (full lock)", [], lock_file=LOCK_NUMPY1)
        if py == (3, 13):
            return PinSet("linux-py313-numpy2 (full lock)", [], lock_file=LOCK_NUMPY2)
    if py < (3, 9) or py > (3, 14):
        return PinSet(f"{plat.os}-py{py[0]}{py[1]}", [], mapping_refusal=(
            f"Python {py[0]}.{py[1]} is not supported by the worker: use a Python 3.9–3.14."))
    if plat.os == MACOS and plat.machine == "x86_64" and py >= (3, 14):
        return PinSet("macos-x86_64-py314", [], mapping_refusal=(
            "ONNX Runtime publishes no Intel macOS build for Python 3.14: choose a worker "
            "Python 3.9–3.13."))
    tier = "py39" if py == (3, 9) else "py314" if py >= (3, 14) else "py313" if py == (3, 13) else "py310"
    mapping = list(_MAPPING[tier])
    name = f"{plat.os}-{plat.machine}-py{py[0]}{py[1]}-numpy{2 if numpy2 else 1}"
    if py >= (3, 14):
        return PinSet(name, mapping, training_refusal=_NO_TF_314)
    if plat.os == MACOS and plat.machine == "x86_64":
        if numpy2 or py >= (3, 13):
            return PinSet(name, mapping, training_refusal=_NO_TF_INTEL_MAC)
        return PinSet(name, mapping, ["tensorflow==2.16.2", *_TRAINING_NUMPY1])
    tf = "tensorflow" if plat.os == MACOS else "tensorflow-cpu"
    if numpy2 or py >= (3, 13):
        return PinSet(name, mapping, [f"{tf}==2.20.0", *_TRAINING_NUMPY2])
    return PinSet(name, mapping, [f"{tf}==2.17.1", *_TRAINING_NUMPY1])


# The CUDA builds: TensorFlow's only on Linux (no native GPU TensorFlow on Windows since 2.10,
# none on macOS); ONNX Runtime's on Linux and Windows.
# On a machine with an NVIDIA GPU the environment gets the CUDA builds of the two packages
# that have one: ``tensorflow-cpu==2.17.1`` becomes ``tensorflow[and-cuda]==2.17.1`` and
# ``onnxruntime==1.20.1`` becomes ``onnxruntime-gpu``. The caveat (checked against the
# wheels' metadata on PyPI):
#
# * TensorFlow 2.17.1's ``and-cuda`` extra pins CUDA 12.3 and cuDNN 8.9 as pip packages
#   (``nvidia-cudnn-cu12==8.9.7.29``, ``nvidia-cublas-cu12==12.3.4.1``, ...), which
#   TensorFlow finds by itself: training runs on the GPU with nothing else installed.
# * onnxruntime-gpu 1.20's wheel depends on no ``nvidia-*`` package at all (only coloredlogs,
#   flatbuffers, numpy, packaging, protobuf, sympy); its CUDA provider loads the CUDA 12 and
#   **cuDNN 9** libraries from the system library path. TensorFlow's pip cuDNN 8.9 is the
#   wrong major version and is not on that path anyway. So ONNX Runtime maps on the GPU only
#   where a system CUDA 12 + cuDNN 9 is installed (libonnxruntime_providers_cuda.so of the
#   1.20.2 wheel NEEDs libcudnn.so.9, libcublas.so.12, libcudart.so.12, libcufft.so.11,
#   libcurand.so.10, libnvrtc.so.12, with no RUNPATH); elsewhere the CUDA provider cannot
#   load, ONNX Runtime creates the session on its CPU provider and core/mapping/model.py logs the
#   fallback. ``get_available_providers()`` lists CUDAExecutionProvider either way: it says
#   what was built in, not what can load.
# * onnxruntime-gpu has no 1.20.1 release (PyPI has 1.20.0 and 1.20.2 for Linux and
#   Windows), hence the version map below: 1.20.2 is the GPU patch release of the 1.20 line.
GPU_PACKAGES = {"tensorflow-cpu": "tensorflow[and-cuda]", "onnxruntime": "onnxruntime-gpu"}
GPU_VERSIONS = {("onnxruntime", "1.20.1"): "1.20.2"}
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_build(lines: Sequence[str], plat: Platform) -> list[str]:
    """``lines`` with the CUDA builds swapped in where ``plat`` has them."""
    swaps = {"onnxruntime"} if plat.os == WINDOWS else set(GPU_PACKAGES) if plat.os == LINUX else set()
    out = []
    for line in lines:
        match = _REQUIREMENT.match(line)
        name = canonical(match.group(1)) if match else ""
        if name in swaps:
            spec = match.group(3).replace(" ", "")
            if spec.startswith("=="):
                spec = "==" + GPU_VERSIONS.get((name, spec[2:]), spec[2:])
            line = GPU_PACKAGES[name] + spec
        out.append(line)
    return out


# Approximate download sizes of the big wheels in MB (PyPI, CPython x86_64, 2026), for the
# set-up button's label only; anything else counts as 2 MB.
WHEEL_MB = {"tensorflow-cpu": 250, "tensorflow": 260, "tensorflow[and-cuda]": 2900, "onnxruntime": 15,
            "onnxruntime-gpu": 280, "opencv-python-headless": 50, "onnx": 16, "scikit-image": 15,
            "scikit-learn": 13, "rasterio": 25, "scipy": 40, "matplotlib": 10, "grpcio": 6, "h5py": 5,
            "libclang": 25, "ml-dtypes": 5, "tensorboard": 6, "keras": 2, "shapely": 3}


def download_mb(lines: Sequence[str]) -> int:
    """Rough download size of installing ``lines`` into an empty venv."""
    total = 0
    for line in lines:
        match = _REQUIREMENT.match(line)
        name = canonical(match.group(1)) + (match.group(2) or "") if match else ""
        total += WHEEL_MB.get(name, WHEEL_MB.get(name.split("[")[0], 2))
    return total


# --- pip's view of a platform (for the cross-platform resolution check) ----------------
def pip_platform_tags(plat: Platform) -> list[str]:
    """``pip --platform`` values for wheels that install on ``plat``."""
    if plat.os == WINDOWS:
        return ["win_amd64"]
    if plat.os == MACOS:
        arch = plat.machine
        versions = ["14_0", "13_0", "12_0", "11_0"] + (["10_15", "10_14", "10_9"] if arch == "x86_64" else [])
        return [f"macosx_{v}_{arch}" for v in versions] + [f"macosx_{v}_universal2" for v in versions]
    arch = "aarch64" if plat.machine == "arm64" else "x86_64"
    return [f"manylinux_2_{m}_{arch}" for m in (28, 27, 26, 24, 17)] + [f"manylinux2014_{arch}"]


def marker_environment(plat: Platform) -> dict[str, str]:
    """PEP 508 marker values of ``plat``: pip evaluates dependency markers for the running
    interpreter even with ``--platform``, so the check substitutes these."""
    version = f"{plat.python[0]}.{plat.python[1]}"
    system, sys_platform, os_name = {WINDOWS: ("Windows", "win32", "nt"), MACOS: ("Darwin", "darwin", "posix"),
                                     LINUX: ("Linux", "linux", "posix")}[plat.os]
    machine = {WINDOWS: "AMD64", MACOS: plat.machine, LINUX: "aarch64" if plat.machine == "arm64" else "x86_64"}
    return {"python_version": version, "python_full_version": version + ".0", "os_name": os_name,
            "sys_platform": sys_platform, "platform_system": system, "platform_machine": machine[plat.os],
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def supported_platforms() -> list[Platform]:
    """Every platform/Python pair the worker is meant for (README lists them)."""
    machines = [(WINDOWS, "x86_64"), (MACOS, "x86_64"), (MACOS, "arm64"), (LINUX, "x86_64")]
    return [Platform(os_, machine, py) for os_, machine in machines for py in SUPPORTED_PYTHONS]
