"""The worker interpreter: finding one, checking it, and creating one (ARCHITECTURE.md: how a job travels).

Mapping (ONNX Runtime) and training (TensorFlow) run in a *worker interpreter*, never in
QGIS' own Python: ``tasks/worker_process.py`` starts ``python -m landslide_mapper run-job -``
with it. That interpreter needs the pinned packages of ``requirements-worker.txt`` on top of
the host's numpy, scipy, GDAL, rasterio and matplotlib (Debian's, the ones QGIS is built
against), so it is a venv created with ``--system-site-packages``, by default in the QGIS
profile folder, where it survives plugin upgrades.

The pure logic (candidates, probing, requirement lists, setup commands) is plain functions;
``EnvironmentSetupTask`` is the QgsTask that runs the setup commands in the background.
Nothing here ever pip-installs into the interpreter QGIS runs on: ``setup_commands`` refuses
an ``env_dir`` that is the running interpreter's or the base interpreter's prefix.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..core.jobs.specs import TRAINING_MODULES
from . import worker_platform as wp

PLUGIN_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = PLUGIN_DIR / "requirements-worker.txt"
# the same worker for hosts with numpy 2 or Python >= 3.13 (QGIS 3.40 on Debian 13), where
# requirements-worker.txt's TensorFlow 2.17 has no wheels
REQUIREMENTS_NUMPY2_FILE = PLUGIN_DIR / "requirements-worker-numpy2.txt"
SETTINGS_KEY = "landslide_mapper/worker_python"
ENV_PYTHON = "LANDSLIDE_MAPPER_PYTHON"           # overrides the setting (servers, qgis_process)
CONSTRAINTS_NAME = "worker-constraints.txt"     # written into the env folder
REQUIREMENTS_NAME = "worker-requirements.txt"   # written into the env folder

# What the worker imports (grep core/ for imports): the host's stack and mapping, which every
# worker needs, and training, which some platforms cannot have (worker_platform.pin_set).
MAPPING_MODULES = ("numpy", "scipy", "rasterio", "osgeo.gdal", "shapely", "matplotlib", "onnx",
                   "onnxruntime", "tqdm")
REQUIRED_MODULES = MAPPING_MODULES + TRAINING_MODULES
# Importing these takes seconds (Keras 3 imports TensorFlow): by default the probe only checks
# that they can be found; ``check_gpu=True`` imports them and asks TensorFlow for its GPUs.
SLOW_MODULES = ("tensorflow", "keras")
# Older majors import fine but lack what core uses (shapely 2's vectorised API, Keras 3's
# ops); Debian's own shapely is 1.8.
MIN_VERSIONS = {"shapely": "2.0", "keras": "3.0"}


PROBE_MARKER = "LANDSLIDE_MAPPER_PROBE "
SETUP_TERMINATE_GRACE_S = 5.0


# --- settings ----------------------------------------------------------------------------
def configured_python() -> Optional[str]:
    """The worker interpreter chosen in the plugin settings, or None."""
    from qgis.core import QgsSettings

    value = QgsSettings().value(SETTINGS_KEY, "", type=str)
    return value.strip() or None


def set_configured_python(path: Optional[str]) -> None:
    """Remember ``path`` as the worker interpreter; None or "" forgets the choice."""
    from qgis.core import QgsSettings

    settings = QgsSettings()
    if path:
        settings.setValue(SETTINGS_KEY, str(path))
    else:
        settings.remove(SETTINGS_KEY)


def default_env_dir() -> Path:
    """Where the plugin creates the worker venv: in the QGIS profile folder, not in the
    plugin folder, so that upgrading or reinstalling the plugin keeps it."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "landslide_mapper" / "worker-venv"


def venv_python(env_dir) -> Path:
    """The venv's interpreter on this platform (``Scripts\\python.exe`` on Windows)."""
    return Path(wp.venv_python(env_dir, wp.current()))


def candidate_pythons() -> list[str]:
    """Interpreters worth probing, best first: ``$LANDSLIDE_MAPPER_PYTHON`` (for servers and
    qgis_process), the configured one, the plugin-made venv, the plugin's development venv,
    then the Python QGIS runs on (or ``python3`` on PATH). Existing ones only, each once (a venv's bin/python is a link
    to the system Python: paths are compared unresolved)."""
    plat = wp.current()
    candidates = [os.environ.get(ENV_PYTHON), configured_python(), str(venv_python(default_env_dir())),
                  str(wp.dev_venv_python(PLUGIN_DIR, plat)), wp.default_base_python(plat)]
    seen: list[str] = []
    for path in candidates:
        if not path:
            continue
        path = os.path.abspath(os.path.expanduser(path))
        if path not in seen and os.path.isfile(path) and os.access(path, os.X_OK):
            seen.append(path)
    return seen


# --- probing -----------------------------------------------------------------------------
def _script(name: str) -> str:
    """A script run by another Python (``python -c``), kept as a real file in tasks/scripts/."""
    return (Path(__file__).resolve().parent / "scripts" / name).read_text(encoding="utf-8")


@dataclass
class Probe:
    """What an interpreter can do, as told by the interpreter itself."""

    python: str
    ok: bool = False
    missing: list[str] = field(default_factory=list)       # not found, or failed to import
    versions: dict[str, str] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)     # onnxruntime.get_available_providers()
    error: Optional[str] = None          # the interpreter could not be asked at all
    python_version: Optional[str] = None
    import_errors: dict[str, str] = field(default_factory=dict)  # found but import failed
    outdated: dict[str, str] = field(default_factory=dict)       # module -> "1.8.5 (needs >= 2.0)"
    gpus: Optional[list[str]] = None     # TensorFlow's GPUs; None when not checked

    @property
    def can_train(self) -> bool:
        """Whether training and fine-tuning can run (``ok`` says mapping can)."""
        return self.ok and not any(m in self.missing for m in TRAINING_MODULES)

    @property
    def pin_set(self) -> Optional[wp.PinSet]:
        """The packages a worker environment for this interpreter's Python and numpy gets."""
        if not self.python_version:
            return None
        return wp.pin_set(wp.current(wp.version_tuple(self.python_version)[:2]), self.versions.get("numpy"))

    @property
    def training_refusal(self) -> Optional[str]:
        """Why this interpreter's platform can have no training packages at all, if so."""
        return self.pin_set.training_refusal if self.pin_set else None

    def message(self) -> str:
        """One actionable sentence for the Worker tab (callers elsewhere add where that is)."""
        if self.error:
            return f"{self.python} {self.error}: choose another interpreter, or create the worker environment"
        if not self.ok or not self.can_train:
            parts = []
            absent = [m for m in self.missing if m not in self.import_errors and m not in self.outdated]
            if absent:
                parts.append("lacks " + ", ".join(absent))
            for module, reason in self.import_errors.items():
                parts.append(f"cannot import {module} ({reason})")
            for module, why in self.outdated.items():
                parts.append(f"has {module} {why}")
            if self.ok:         # mapping works; say why training does not
                why = self.training_refusal or ("create the worker environment to add them, "
                                                "or choose another interpreter")
                return (f"{self.python}: maps with ONNX Runtime {self.versions.get('onnxruntime', '?')}, "
                        f"but cannot train ({'; '.join(parts)}): {why}")
            return (f"{self.python} {'; '.join(parts)}: create the worker environment "
                    "or choose another interpreter")
        ort = self.versions.get("onnxruntime", "?")
        tf = self.versions.get("tensorflow", "?")
        gpu = "" if self.gpus is None else (f", TensorFlow sees {len(self.gpus)} GPU(s)" if self.gpus
                                            else ", TensorFlow sees no GPU")
        return (f"{self.python}: Python {self.python_version}, ONNX Runtime {ort} "
                f"({', '.join(self.providers) or 'no providers'}), TensorFlow {tf}{gpu}")


_PROBE_SCRIPT = _script("probe_worker.py")


def child_environment() -> dict[str, str]:
    """The environment for another interpreter started from QGIS: without the variables that
    tie a Python to QGIS' own installation."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", TF_CPP_MIN_LOG_LEVEL="2",
               NO_ALBUMENTATIONS_UPDATE="1")        # albumentations >= 1.4.2x asks PyPI when imported
    for name in ("PYTHONHOME", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    return env


def probe(python: str, timeout: float = 120, check_gpu: bool = False,
          modules: Sequence[str] = REQUIRED_MODULES) -> Probe:
    """Ask ``python`` which of ``modules`` it can import (TensorFlow and Keras are only looked
    up unless ``check_gpu``, which imports them — seconds — and lists TensorFlow's GPUs)."""
    result = Probe(python=str(python))
    args = json.dumps([list(modules), list(SLOW_MODULES), bool(check_gpu), PROBE_MARKER])
    try:
        proc = subprocess.run([str(python), "-c", _PROBE_SCRIPT, args], capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=timeout,
                              env=child_environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        result.error = f"did not answer within {timeout:g} s"
        return result
    except OSError as exc:
        result.error = f"cannot be started: {exc.strerror or exc}"
        return result
    answer = next((line[len(PROBE_MARKER):] for line in reversed(proc.stdout.splitlines())
                   if line.startswith(PROBE_MARKER)), None)
    if answer is None:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        result.error = f"is not a working Python (exit code {proc.returncode}: {last[:300]})"
        return result
    data = json.loads(answer)
    result.python_version = data["python_version"]
    result.versions = data["versions"]
    result.missing = data["missing"]
    result.import_errors = data["import_errors"]
    result.providers = data["providers"]
    result.gpus = data["gpus"]
    for module, minimum in MIN_VERSIONS.items():
        have = result.versions.get(module)
        if have is not None and wp.version_tuple(have) < wp.version_tuple(minimum):
            result.outdated[module] = f"{have} (needs >= {minimum})"
            result.missing.append(module)
    result.ok = not any(m in result.missing for m in MAPPING_MODULES)
    return result


def nvidia_gpu_present() -> bool:
    """Whether ``nvidia-smi -L`` runs and lists at least one GPU (the driver is installed)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and any(line.startswith("GPU ") for line in proc.stdout.splitlines())


# --- requirements ------------------------------------------------------------------------
def worker_requirements(gpu: bool = False, path=REQUIREMENTS_FILE) -> list[str]:
    """The pinned requirement lines of a lock file such as requirements-worker.txt (comments
    dropped); with ``gpu`` the CUDA builds this platform has (worker_platform.gpu_build)."""
    lines = wp.requirement_lines(path)
    return wp.gpu_build(lines, wp.current()) if gpu else lines


def _ask(python: str, code: str, *args: str, timeout: float = 60) -> dict:
    """Run ``code`` (which prints one JSON object) in ``python`` with ``args``."""
    try:
        proc = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                              env=child_environment(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"The Python {python} cannot be started: {exc}") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"The Python {python} failed (exit code {proc.returncode}): "
                           f"{proc.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


_FACTS = _script("host_facts.py")
_HOST = json.dumps(sorted(wp.HOST_PACKAGES))


def host_constraints(base_python: Optional[str] = None) -> list[str]:
    """``numpy==…`` and ``scipy==…`` as installed for ``base_python`` (as pip sees them): pip
    constraints so that installing the worker packages can never replace the host's numpy
    or scipy, which GDAL, rasterio and QGIS were built against."""
    versions = _ask(base_python or wp.default_base_python(), _FACTS, _HOST)["versions"]
    return [f"{name}=={version}" for name, version in versions.items()]


def pins_for(facts: dict, gpu: bool = False) -> tuple[wp.PinSet, list[str]]:
    """The pin set for the host that ``facts`` (the _FACTS answer) describes and its
    requirement lines: the full lock or the pins, plus the host packages it lacks."""
    pins = wp.pin_set(wp.current(facts["python"]), facts["versions"].get("numpy"))
    if pins.lock_file:
        lines = worker_requirements(path=PLUGIN_DIR / pins.lock_file)
    else:
        lines = list(pins.requirements)
    lines += [spec for name, spec in wp.HOST_PACKAGES.items() if not facts.get("has", {}).get(name, True)]
    return pins, (wp.gpu_build(lines, wp.current()) if gpu else lines)


# ``pip check`` limited to what the environment itself installed: with system site packages
# it also judges the host's own packages (Debian 13's python3-typeshed declares requirements
# it does not depend on), which the worker neither uses nor may change. Exit 1 only for
# problems of the environment's packages; the host's are listed as such.
LOCAL_PIP_CHECK = _script("local_pip_check.py")


def setup_estimate(base_python: Optional[str] = None, gpu: bool = False) -> tuple[int, wp.PinSet]:
    """(rough download size in MB, pin set) of creating the worker environment here."""
    facts = _ask(base_python or wp.default_base_python(), _FACTS, _HOST)
    pins, lines = pins_for(facts, gpu)
    return wp.download_mb(lines), pins


def diagnostics_report(probe_result: Optional["Probe"], qgis_version: str, qt_version: str) -> str:
    """What a bug report needs: QGIS, Qt, Python and OS, the worker Python, its packages,
    ONNX Runtime's providers and the GPU seen (plain text, for the clipboard)."""
    import platform

    lines = [f"Landslide Mapper diagnostics ({platform.platform()})",
             f"QGIS {qgis_version}, Qt {qt_version}, QGIS' Python {sys.version.split()[0]} ({sys.prefix})",
             f"Machine: {platform.machine()}; NVIDIA GPU (nvidia-smi): {'yes' if nvidia_gpu_present() else 'no'}"]
    if probe_result is None:
        lines.append("Worker Python: none found")
    else:
        lines.append(f"Worker Python: {probe_result.python} (Python {probe_result.python_version or '?'})")
        lines.append(f"Worker status: {probe_result.message()}")
        for name, version in sorted(probe_result.versions.items()):
            lines.append(f"  {name} {version}")
        if probe_result.missing:
            lines.append("  missing: " + ", ".join(probe_result.missing))
        lines.append("ONNX Runtime providers: " + (", ".join(probe_result.providers) or "none"))
        if probe_result.gpus is not None:
            lines.append("TensorFlow GPUs: " + (", ".join(probe_result.gpus) or "none"))
        if probe_result.pin_set is not None:
            lines.append(f"Pin set for this worker: {probe_result.pin_set.name}")
    return "\n".join(lines)


def _same_or_inside(path: Path, prefix: Path) -> bool:
    """Whether ``path`` is ``prefix`` or one of its parents (a venv there would install into
    or over that Python)."""
    try:
        prefix.relative_to(path)
        return True
    except ValueError:
        return False


def setup_commands(env_dir, base_python: Optional[str] = None, gpu: bool = False,
                   requirements: Optional[Sequence[str]] = None,
                   pip_args: Sequence[str] = ()) -> list[list[str]]:
    """The commands that create (or repair) the worker venv ``env_dir``: venv with system
    site packages, pip install of the requirements (the pinned set for the host's platform,
    Python and numpy, see pins_for) under the host's numpy/scipy constraints, pip check of
    what the environment installed. Writes the constraints and requirements files into
    ``env_dir`` (creating it).

    Raises ValueError for an ``env_dir`` that is, or contains, the running interpreter's
    prefix or ``base_python``'s (this never installs into QGIS' Python), and where no worker
    can run on the base Python's platform at all."""
    env_dir = Path(env_dir).expanduser().absolute()
    base_python = base_python or wp.default_base_python()
    facts = _ask(base_python, _FACTS, _HOST)
    protected = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              facts["prefix"], facts["base_prefix"])}
    resolved = env_dir.resolve()
    for prefix in sorted(protected):
        if _same_or_inside(resolved, prefix):
            raise ValueError(f"Refusing to set up the worker environment in {env_dir}: it is (or "
                             f"contains) the installation {prefix} of a running or base Python. "
                             "Choose a new, empty folder.")
    if env_dir.exists() and not env_dir.is_dir():
        raise ValueError(f"{env_dir} exists and is not a folder: choose a new, empty folder.")
    ours = {CONSTRAINTS_NAME, REQUIREMENTS_NAME}   # left by an attempt whose venv step failed
    if (env_dir.is_dir() and not (env_dir / "pyvenv.cfg").exists()
            and any(p.name not in ours for p in env_dir.iterdir())):
        raise ValueError(f"{env_dir} is a non-empty folder and not a Python virtual environment: "
                         "choose a new, empty folder.")
    constraints = [f"{name}=={version}" for name, version in facts["versions"].items()]
    pins, pinned = pins_for(facts, gpu)
    if pins.mapping_refusal:
        raise ValueError(pins.mapping_refusal)
    requirements = list(pinned if requirements is None else requirements)
    env_dir.mkdir(parents=True, exist_ok=True)
    constraints_file = env_dir / CONSTRAINTS_NAME
    requirements_file = env_dir / REQUIREMENTS_NAME
    constraints_file.write_text(
        "# the host's packages, which pip must never replace (written by landslide_mapper)\n"
        + "".join(c + "\n" for c in constraints), encoding="utf-8")
    requirements_file.write_text(
        f"# the worker's packages ({'CUDA' if gpu else 'CPU'} build, written by landslide_mapper)\n"
        + "".join(r + "\n" for r in requirements), encoding="utf-8")
    python = str(venv_python(env_dir))
    return [
        [str(base_python), "-m", "venv", "--system-site-packages", str(env_dir)],
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "--progress-bar", "off", "--no-warn-script-location",
         "-c", str(constraints_file), "-r", str(requirements_file), *map(str, pip_args)],
        [python, "-c", LOCAL_PIP_CHECK],
    ]


# --- the task ----------------------------------------------------------------------------
_HINTS = (
    (("No space left on device", "Errno 28", "ENOSPC"),
     "The disk is full: free some space where the environment is created (the packages need "
     "a few GB, the CUDA build several more) and try again."),
    (("Could not fetch URL", "Failed to establish a new connection", "NewConnectionError",
      "Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
      "ConnectTimeoutError", "Read timed out", "ProxyError", "Connection refused",
      "Max retries exceeded"),
     "pip could not reach PyPI: check the network connection or proxy (pip honours HTTPS_PROXY "
     "and pip.conf), then try again."),
    (("CERTIFICATE_VERIFY_FAILED", "SSLError"),
     "pip could not verify PyPI's certificate (a proxy intercepting HTTPS?): set PIP_CERT or "
     "'cert' in pip.conf to your organisation's CA bundle."),
    (("ensurepip is not", "No module named venv", "No module named ensurepip"),
     "This Python cannot create virtual environments: install python3-venv "
     "(sudo apt install python3-venv) and try again."),
    (("Permission denied", "EACCES", "Read-only file system"),
     "No permission to write there: choose a folder you can write to."),
    (("ResolutionImpossible", "conflicting dependencies", "Cannot install"),
     "The pinned packages conflict with this Python's own numpy/scipy (kept fixed on purpose): "
     "use the system Python 3 of the QGIS installation as the base, or report the log."),
    (("No matching distribution found", "Could not find a version that satisfies"),
     "pip found no suitable release of a pinned package: is PyPI reachable, and does it have "
     "wheels for this Python version and platform?"),
    (("has requirement", "is not supported on this platform", "which is not installed"),
     "pip check found inconsistent packages: the environment was installed but is broken."),
)


def failure_hint(output: str) -> str:
    """An actionable sentence for the output of a failed setup command ('' if none fits)."""
    for needles, hint in _HINTS:
        if any(n in output for n in needles):
            return hint
    return ""
