"""Creating the worker environment in the background: the QgsTask that runs
tasks/worker_env.setup_commands one after another, follows their output and cleans up on
failure or cancel (the pure logic it runs lives in worker_env)."""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

from qgis.core import QgsTask

from . import worker_platform as wp
from .child_process import follow
from .worker_env import (LOCAL_PIP_CHECK, SETUP_TERMINATE_GRACE_S, Probe, child_environment, default_env_dir,
                         failure_hint, probe, setup_commands, venv_python, worker_requirements)


class EnvironmentSetupTask(QgsTask):
    """Creates (or repairs) the worker venv in the background.

    ``commands`` replaces ``setup_commands(...)`` (tests; custom installs). On success
    ``python`` is the environment's interpreter and ``probe`` what it can import; on failure
    ``error`` says which command failed, its exit code, its last output lines and a hint. An
    ``env_dir`` that did not exist before is removed on failure or cancel.
    """

    def __init__(self, env_dir=None, base_python: Optional[str] = None, gpu: bool = False,
                 requirements: Optional[Sequence[str]] = None, pip_args: Sequence[str] = (),
                 commands: Optional[Sequence[Sequence[str]]] = None,
                 on_finished: Optional[Callable[["EnvironmentSetupTask"], None]] = None,
                 description: str = "Create the worker environment"):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.env_dir = Path(env_dir if env_dir is not None else default_env_dir()).expanduser().absolute()
        self.base_python = base_python
        self.gpu = gpu
        self.requirements = None if requirements is None else list(requirements)
        self.pip_args = list(pip_args)
        self.commands = None if commands is None else [list(map(str, c)) for c in commands]
        self.on_finished = on_finished
        self.log_lines: list[str] = []
        self.error: Optional[str] = None
        self.failed_command: Optional[list[str]] = None
        self.returncode: Optional[int] = None
        self.python: Optional[str] = None
        self.probe: Optional[Probe] = None
        self.exception: Optional[BaseException] = None
        self.created_env_dir = False
        self.env_dir_removed = False
        self._collected = 0
        self._expected = 1

    # -- in the task thread ---------------------------------------------------------
    def run(self) -> bool:
        self.created_env_dir = not self.env_dir.exists()
        try:
            ok = self._run()
        except Exception as exc:  # stored, shown by finished() on the main thread
            self.exception = exc
            self.error = str(exc)
            ok = False
        if not ok and self.created_env_dir and self.env_dir.exists():
            shutil.rmtree(self.env_dir, ignore_errors=True)
            self.env_dir_removed = not self.env_dir.exists()
        return ok

    def _run(self) -> bool:
        commands = self.commands
        if commands is None:
            commands = setup_commands(self.env_dir, self.base_python, self.gpu, self.requirements,
                                      self.pip_args)
        install = next((c for c in commands if _command_kind(c) == "install"), [])
        if "-r" in install and install.index("-r") + 1 < len(install):
            self._expected = max(1, len(worker_requirements(path=install[install.index("-r") + 1])))
        self.setProgress(1.0)
        for index, command in enumerate(commands):
            if self.isCanceled():
                return False
            kind = _command_kind(command)
            self.log_lines.append("$ " + " ".join(command))
            start = len(self.log_lines)
            code = self._execute(command, kind)
            if self.isCanceled():
                return False
            if code != 0:
                self.returncode = code
                self.failed_command = list(command)
                tail = "\n".join(self.log_lines[start:][-20:])
                hint = failure_hint("\n".join(self.log_lines[start:]))
                self.error = (f"`{' '.join(command)}` failed (exit code {code})."
                              + (f" {hint}" if hint else "") + (f"\nLast output:\n{tail}" if tail else ""))
                return False
            self.setProgress(self._done_progress(kind, index, len(commands)))
        if self.commands is None:
            self.python = str(venv_python(self.env_dir))
        else:   # custom commands: the env's python if they made one
            candidate = venv_python(self.env_dir)
            self.python = str(candidate) if candidate.exists() else None
        if self.python is not None:
            self.probe = probe(self.python, check_gpu=self.gpu)
            self.log_lines.append(self.probe.message())
            must_train = self.probe.training_refusal is None
            if (self.commands is None and self.requirements is None
                    and not (self.probe.can_train if must_train else self.probe.ok)):
                self.error = "The environment was installed, but " + self.probe.message()
                return False
        self.setProgress(100.0)
        return True

    def _execute(self, command: list[str], kind: str) -> int:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                                    errors="replace", env=_setup_environment(),
                                    **wp.popen_options(wp.current()))
        except OSError as exc:
            self.log_lines.append(f"{command[0]} cannot be started: {exc.strerror or exc}")
            return 127
        code = follow(proc, lambda line: self._handle(line.rstrip("\n"), kind), self.isCanceled,
                      lambda p: wp.stop_tree(p, SETUP_TERMINATE_GRACE_S, polite=True))
        return code

    def _handle(self, line: str, kind: str) -> None:
        self.log_lines.append(line)
        if kind != "install":
            return
        stripped = line.lstrip()
        if stripped.startswith(("Collecting", "Downloading", "Using cached", "Processing")):
            self._collected += 1
            # about two such lines per package (more with dependencies): approaches 60 %
            self._raise_progress(5.0 + 55.0 * (1.0 - math.exp(-self._collected / (2.0 * self._expected))))
        elif stripped.startswith("Installing collected packages"):
            self._raise_progress(80.0)
        elif stripped.startswith("Successfully installed"):
            self._raise_progress(90.0)

    def _raise_progress(self, value: float) -> None:
        if value > self.progress():
            self.setProgress(value)

    @staticmethod
    def _done_progress(kind: str, index: int, count: int) -> float:
        return {"venv": 5.0, "install": 90.0, "check": 95.0}.get(kind, 95.0 * (index + 1) / count)

    # -- on the main thread ---------------------------------------------------------
    def finished(self, ok: bool) -> None:  # noqa: D401 (QGIS API)
        if self.on_finished is not None:
            self.on_finished(self)

    @property
    def error_message(self) -> str:
        if self.isCanceled():
            removed = f" {self.env_dir} was removed." if self.env_dir_removed else ""
            return "Cancelled." + removed
        return self.error or ""

    @property
    def details(self) -> str:
        """The whole log, for a *Details* dialog."""
        return "\n".join(self.log_lines + ([f"Error: {self.error}"] if self.error else []))


def _command_kind(command: Sequence[str]) -> str:
    text = " ".join(command[1:4])
    if text.startswith("-m venv"):
        return "venv"
    if text.startswith("-m pip install"):
        return "install"
    if list(command[1:3]) == ["-c", LOCAL_PIP_CHECK]:
        return "check"
    return "other"


def _setup_environment() -> dict[str, str]:
    env = child_environment()
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PIP_USER"] = "0"               # overrides pip.conf's user = true, which fails in a venv
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    env.pop("VIRTUAL_ENV", None)
    return env
