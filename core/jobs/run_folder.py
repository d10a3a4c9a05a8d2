"""A run's output folder that appears only when complete and never replaces another.

Everything is written into a hidden ``.<name>.<random>.partial`` folder beside the final one and
renamed into place at the end; on failure or cancel the staging folder is deleted. A
name that is taken (e.g. a run whose layers the user has since edited) gets a suffix.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from . import faults
from ..errors import LandslideMapperError, OutputError


OWNER = ".owner.json"            # in a staging folder: which process builds it
STALE_AFTER_S = 7 * 24 * 3600     # a staging folder this old is stale whoever made it


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (never signals it)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)          # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259                                 # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's live process
        return True
    return True


def remove_stale(output_dir: Path, log=None) -> list[Path]:
    """Staging folders left by runs that were killed (their process is gone from this machine,
    or they are older than a week) are removed; returns them."""
    removed = []
    for folder in output_dir.glob(".*.partial"):
        if not folder.is_dir():
            continue
        try:
            owner = json.loads((folder / OWNER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = {}
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            continue
        mine = owner.get("host") == socket.gethostname()
        if (mine and isinstance(owner.get("pid"), int) and not _alive(owner["pid"])) or age > STALE_AFTER_S:
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
                if log is not None:
                    log(f"Removed {folder.name} from {output_dir}: the unfinished output of a run that was stopped "
                        f"{'(process ' + str(owner['pid']) + ' is gone)' if mine else 'over a week ago'}.")
    return removed


class RunFolder:
    def __init__(self, output_dir: str | os.PathLike, run_name: str | None = None, log=None):
        self.output_dir = Path(output_dir)
        self.name = run_name or time.strftime("run_%Y%m%d_%H%M%S")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise OutputError(f"The output folder {self.output_dir} is a file, not a folder.")
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(self.output_dir, log)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.name}.", suffix=".partial",
                                                 dir=self.output_dir))
            (self.staging / OWNER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                          "started": time.time()}), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"Cannot write into the output folder {self.output_dir}: "
                              f"{exc.strerror or exc}.") from None
        self.final: Path | None = None

    def path(self, name: str) -> Path:
        return self.staging / name

    def free_name(self) -> Path:
        candidate = self.output_dir / self.name
        n = 2
        while candidate.exists():
            candidate = self.output_dir / f"{self.name}_{n}"
            n += 1
        return candidate

    def commit(self) -> Path:
        (self.staging / OWNER).unlink(missing_ok=True)
        # mkdtemp makes the staging folder private (0700); the result gets the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.staging, 0o777 & ~umask)
        for _ in range(100):
            target = self.free_name()
            try:
                os.rename(self.staging, target)
            except OSError:
                if target.exists():
                    continue  # taken meanwhile by another run: try the next suffix
                raise
            self.final = target
            return target
        raise OutputError(f"Could not find a free run folder name in {self.output_dir}.")

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a failed write is judged (disk full?) while the partial run still takes its space
        known = faults.explain(exc, self.output_dir) if isinstance(exc, Exception) else None
        if exc_type is not None or self.final is None:
            self.discard()
        if known is not None and not isinstance(exc, LandslideMapperError):
            raise known from exc
