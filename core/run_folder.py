"""A run's output folder that appears only when complete and never replaces another.

Everything is written into a hidden ``.<name>.<random>.partial`` folder beside the final one and
renamed into place at the end; on failure or cancel the staging folder is deleted. A
name that is taken (e.g. a run whose layers the user has since edited) gets a suffix.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import OutputError


class RunFolder:
    def __init__(self, output_dir: str | os.PathLike, run_name: str | None = None):
        self.output_dir = Path(output_dir)
        self.name = run_name or time.strftime("run_%Y%m%d_%H%M%S")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise OutputError(f"The output folder {self.output_dir} is a file, not a folder.")
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.name}.", suffix=".partial",
                                                 dir=self.output_dir))
            probe = self.staging / ".write_test"
            probe.write_bytes(b"")
            probe.unlink()
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
        if exc_type is not None or self.final is None:
            self.discard()
