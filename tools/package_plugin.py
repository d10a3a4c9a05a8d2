"""Build the plugin ZIP that plugins.qgis.org and QGIS' "Install from ZIP" expect.

    python tools/package_plugin.py [--output DIR]     (default DIR: dist/ in the repository)

writes ``DIR/landslide_mapper-<version>.zip`` (version from metadata.txt) holding one folder,
``landslide_mapper/``, with the runtime files only. They are chosen by a whitelist: the
top-level files of TOP_FILES, the package folders of PACKAGES that exist, the data folders
of DATA_DIRS and the bundled models of MODEL_FILES (icons are plain files: Qt6 has no
pyrcc, so nothing is compiled). Caches, hidden and editor files
inside those folders are left out. metadata.txt, the icon and the bundled checkpoint are
checked first; the ZIP is written under a temporary name and renamed into place when
complete. Entries are sorted and carry one fixed timestamp (SOURCE_DATE_EPOCH, else the
time of the last commit), so the same tree gives the same bytes.
"""
from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "landslide_mapper"
"""The plugin's folder name in QGIS and the Python package name."""

TOP_FILES = ("__init__.py", "__main__.py", "plugin.py", "qgis_compat.py", "metadata.txt", "LICENSE", "README.md",
             "requirements-worker.txt", "requirements-worker-numpy2.txt")
"""Top-level files of the plugin; each one must exist."""

PACKAGES = ("core", "tasks", "qgis_io", "ui", "processing_provider")
"""Top-level runtime package folders, taken whole (minus caches); a missing one is skipped."""

DATA_DIRS = ("icons",)
"""Data folders, taken whole (minus caches); each one must exist."""

CHECKPOINT_DIRS = ("models/landslide_cascade_v2", "models/landslide_rgb_v1")   # core.mapping.bundled's two checkpoints
CHECKPOINT_FILES = ("checkpoint.json", "model.keras", "model.onnx", "MODEL_CARD.md")
MODEL_FILES = tuple(f"{folder}/{name}" for folder in CHECKPOINT_DIRS for name in CHECKPOINT_FILES) + (
    "models/spectral_baseline.json", "models/spectral_baseline.onnx")
"""The bundled models, file by file: checkpoints trained into models/ later stay out."""

REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "tracker", "repository")
"""What plugins.qgis.org's validator requires in metadata.txt [general] (case-sensitive)."""

URL_METADATA = ("tracker", "repository", "homepage")
PLACEHOLDER_URLS = ("http://bugs", "http://repo", "http://homepage")
"""Addresses the validator parses (the template's placeholders are refused); it also asks
each one over the network, which only an upload can do."""

MAX_UPLOAD_BYTES = 25_000_000
"""plugins.qgis.org's upload limit; a larger ZIP still installs from file."""

SKIPPED_SUFFIXES = (".pyc", ".pyo", ".partial", ".orig", ".rej", ".swp", ".bak")


class PackageError(Exception):
    """The plugin cannot be packaged; the message says what is missing or wrong."""


def read_metadata(root: Path = ROOT) -> Dict[str, str]:
    """metadata.txt's [general] section, parsed as plugins.qgis.org does (keys keep their case)."""
    path = root / "metadata.txt"
    if not path.is_file():
        raise PackageError(f"{path} is missing")
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
        if not parser.has_section("general"):
            raise PackageError(f"{path} has no [general] section")
        return dict(parser.items("general"))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} cannot be parsed: {exc}") from exc


def _is_skipped(path: Path) -> bool:
    name = path.name
    return (name.startswith(".") or name == "__pycache__" or name.endswith("~")
            or name.endswith(SKIPPED_SUFFIXES))


def _walk(root: Path, folder: str) -> List[str]:
    """Files under ``root/folder`` as POSIX paths relative to root, minus caches and hidden files."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root / folder):
        dirnames[:] = [d for d in dirnames if not _is_skipped(Path(d))]
        for name in filenames:
            path = Path(dirpath) / name
            if not _is_skipped(path):
                found.append(path.relative_to(root).as_posix())
    return found


def collect_files(root: Path = ROOT) -> Tuple[List[str], List[str]]:
    """(files to package as POSIX paths relative to root, sorted; problems found)."""
    problems = []
    files = []
    for name in TOP_FILES + MODEL_FILES:
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size == 0:
            problems.append(f"{name} is empty")
        else:
            files.append(name)
    for folder in DATA_DIRS:
        if (root / folder).is_dir():
            files.extend(_walk(root, folder))
        else:
            problems.append(f"{folder}/ is missing")
    for folder in packaged_folders(root):
        files.extend(_walk(root, folder))
    return sorted(set(files)), problems


def check_metadata(metadata: Dict[str, str], files: List[str]) -> List[str]:
    """Problems plugins.qgis.org or QGIS would have with metadata.txt."""
    problems = [f"metadata.txt: '{key}' is missing or empty" for key in REQUIRED_METADATA
                if not metadata.get(key, "").strip()]
    version = metadata.get("version", "").strip()
    if version and not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+_-]*", version):
        problems.append(f"metadata.txt: version '{version}' cannot be part of a file name")
    if "/" in metadata.get("author", ""):
        problems.append("metadata.txt: 'author' cannot contain a slash")
    for key in URL_METADATA:
        url = metadata.get(key, "").strip()
        parts = urlparse(url)
        if url and (parts.scheme not in ("http", "https") or not parts.netloc or url in PLACEHOLDER_URLS):
            problems.append(f"metadata.txt: {key}={url} is not a web address (http:// or https://)")
    icon = metadata.get("icon", "").strip()
    if not icon:
        problems.append("metadata.txt: 'icon' is missing or empty")
    else:
        icon = icon[2:] if icon.startswith("./") else icon
        if icon not in files:
            problems.append(f"metadata.txt: icon={icon} is not a file that goes into the ZIP")
    return problems


def packaged_folders(root: Path = ROOT) -> List[str]:
    """The package folders of PACKAGES present in this tree (the others are skipped)."""
    return [folder for folder in PACKAGES if (root / folder).is_dir()]


def source_epoch(root: Path = ROOT) -> int:
    """The one timestamp of every entry: SOURCE_DATE_EPOCH, else the last commit's, else 1980."""
    floor = 315532800  # 1980-01-01, the earliest time a ZIP can hold
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        try:
            value = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=root, capture_output=True,
                                   text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            value = ""
    try:
        return max(int(value), floor)
    except ValueError:
        return floor


def _zip_entry(arcname: str, date_time) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3                    # Unix, so the permissions below are read
    info.external_attr = 0o100644 << 16      # regular file, rw-r--r--
    return info


def build(output_dir: Path, root: Path = ROOT) -> Tuple[Path, int]:
    """Check the tree, write ``output_dir/landslide_mapper-<version>.zip``; return (path, files)."""
    root = Path(root).resolve()
    metadata = read_metadata(root)
    files, problems = collect_files(root)
    problems += check_metadata(metadata, files)
    if problems:
        raise PackageError("cannot package the plugin:\n  - " + "\n  - ".join(problems))

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{PACKAGE_NAME}-{metadata['version'].strip()}.zip"
    partial = output_dir / f".{target.name}.{os.getpid()}.partial"
    epoch = source_epoch(root)
    date_time = time.gmtime(epoch)[:6]
    entries = sorted((name, root / name) for name in files)
    try:
        with zipfile.ZipFile(partial, "w") as zf:
            for name, src in entries:
                with open(src, "rb") as fin, zf.open(_zip_entry(f"{PACKAGE_NAME}/{name}", date_time), "w") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
        with zipfile.ZipFile(partial) as zf:
            bad = zf.testzip()
        if bad is not None:
            raise PackageError(f"the written ZIP is damaged at {bad}")
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return target, len(entries)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist",
                        help="folder for the ZIP (default: dist/ in the repository)")
    args = parser.parse_args(argv)
    try:
        target, count = build(args.output)
    except PackageError as exc:
        print(f"package_plugin: {exc}", file=sys.stderr)
        return 1
    skipped = [folder for folder in PACKAGES if folder not in packaged_folders()]
    if skipped:
        print(f"note: absent package folders skipped: {', '.join(skipped)}")
    size = target.stat().st_size
    print(f"{target}  {size / 1e6:.1f} MB, {count} files")
    if size > MAX_UPLOAD_BYTES:
        print(f"warning: larger than plugins.qgis.org's upload limit ({MAX_UPLOAD_BYTES / 1e6:.0f} MB)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
