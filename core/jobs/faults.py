"""Failures during a run, turned into what the user can act on.

An error the code did not foresee must not reach the user as a traceback: the command
line and the worker write the traceback to a crash report beside the output (or in the
temporary folder) and print one line that points to it. I/O failures are checked for
their usual cause first: a full disk says so, whichever library noticed it first (GDAL
often reports a failed tile write only when the tile is read back).
"""
from __future__ import annotations

import errno
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterable

from ..errors import LandslideMapperError, OutputError

FULL_BELOW_BYTES = 2 * 2**20        # less free space than this after a failed write: the disk is full
CRASH_PREFIX = "landslide_mapper_crash_"


class ResourceError(LandslideMapperError):
    """The machine ran out of something (memory, disk) the job needed."""


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free space of the file system holding ``folder`` (its nearest existing parent)."""
    path = Path(folder).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _is_io_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"RasterioIOError", "CPLE_BaseError", "RasterioError"}) or "Read or write failed" in str(exc)


def explain(exc: BaseException, output_dir: str | os.PathLike | None) -> LandslideMapperError | None:
    """A user-facing error for a run-time failure with a known cause, or None."""
    if isinstance(exc, MemoryError):
        return ResourceError(f"Not enough memory for this job ({exc or 'an allocation failed'}): use a smaller "
                             "tile size or batch size, map a smaller area, or close other programs.")
    if isinstance(exc, ImportError):
        return ResourceError(f"The Python running Landslide Mapper ({sys.executable}) lacks a package it needs "
                             f"({exc}): set up the worker environment (QGIS: the Landslide Mapper dock's Worker tab) "
                             "or install the requirements into this Python.")
    if output_dir is None or not _is_io_error(exc):
        return None
    code = getattr(exc, "errno", None)
    free = free_bytes(output_dir)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) or (free is not None and free < FULL_BELOW_BYTES):
        left = "" if free is None else f" ({free / 2**20:.1f} MB free)"
        return ResourceError(f"The disk holding {output_dir} is full{left}: writing the run failed. Free some "
                             "space or choose an output folder on another disk; the partial run was removed.")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = getattr(exc, "filename", None) or output_dir
        return OutputError(f"Permission to write {where} was lost during the run ({exc.strerror}): check the "
                           "folder's permissions, or choose another output folder; the partial run was removed.")
    if code == errno.EFBIG:
        return ResourceError(f"A file of the run grew larger than this system allows ({exc}): map a smaller "
                             "area, or write to a file system without that limit.")
    return None


def failure(exc: Exception, output_dir: str | os.PathLike | None) -> tuple[str, bool, Path | None]:
    """What to tell the user about ``exc``: (message, whether the cause is known — the input
    or the machine —, the crash report written for a bug, else None)."""
    known = explain(exc, output_dir)
    if known is not None:
        return str(known), True, None
    report = write_crash_report(exc, [output_dir and Path(output_dir).absolute().parent, output_dir])
    return crash_message(exc, report), False, report


def write_crash_report(exc: BaseException, folders: Iterable[str | os.PathLike | None], command: str = ""
                       ) -> Path | None:
    """The traceback and the versions that matter, in the first writable folder (else the
    temporary folder); None when none can be written."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    head = [f"Landslide Mapper crash report, {time.strftime('%Y-%m-%d %H:%M:%S')}",
            f"command: {command or ' '.join(sys.argv)}",
            f"python: {sys.version.split()[0]} ({sys.executable}); {platform.platform()}"]
    for name in ("numpy", "rasterio", "onnxruntime", "tensorflow", "shapely"):
        module = sys.modules.get(name)
        if module is not None:
            head.append(f"{name}: {getattr(module, '__version__', '?')}")
    name = f"{CRASH_PREFIX}{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}.log"
    for folder in [*[f for f in folders if f], tempfile.gettempdir()]:
        try:
            path = Path(folder).absolute() / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(head) + "\n\n" + text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def crash_message(exc: BaseException, report: Path | None) -> str:
    where = f"The full report is in {report}" if report else "No report could be written"
    return (f"Internal error, a bug in Landslide Mapper rather than a problem with your input "
            f"({type(exc).__name__}: {str(exc)[:300]}). {where}; please attach it to a bug report.")
