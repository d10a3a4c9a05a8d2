#!/usr/bin/env bash
# Landslide Mapper developer entry point. On a fresh Debian 12 machine (as root, or with
# sudo) each command installs what it needs first: QGIS and the GDAL Python stack from
# apt, then a virtual environment (.venv, with system site packages so PyQGIS is
# visible) with the pinned packages of requirements.txt and requirements-worker.txt.
#
#   ./dev.sh demo     generate the demo scene, map every year, print the summary
#   ./dev.sh test     run the whole test suite
#   ./dev.sh bench    run the inference benchmark (bench/infer.py)
#   ./dev.sh screenshots [OUT]  QGIS under Xvfb maps the demo through the dock; PNGs to OUT
#   ./dev.sh package [OUT]      the plugin ZIP (plugins.qgis.org, Install from ZIP) into OUT (dist)
#   ./dev.sh setup    only install
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
APT_PACKAGES="qgis python3-qgis python3-gdal python3-rasterio python3-scipy python3-matplotlib python3-cairo python3-venv"

need_apt() {
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || return 0
  done
  return 1
}

setup() {
  if need_apt; then
    echo ">> installing Debian packages: $APT_PACKAGES" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
  fi
  local stamp="$VENV/.requirements.sha"
  local want
  # requirements.txt includes requirements-worker.txt: a change in either reinstalls
  want=$(cat requirements.txt requirements-worker.txt | sha256sum | cut -d' ' -f1)
  if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo ">> creating $VENV (system site packages) and installing requirements.txt" >&2
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location -r requirements.txt
    "$PY" -m pip check
    echo "$want" > "$stamp"
  fi
  # Make the repository importable as the package `landslide_mapper` (the plugin's
  # folder name in QGIS) without copying it: build/pkgroot/landslide_mapper -> repo root.
  mkdir -p build/pkgroot
  ln -sfn ../.. build/pkgroot/landslide_mapper
  local site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$ROOT/build/pkgroot" > "$site/landslide_mapper_dev.pth"
  "$PY" -c 'import numpy, osgeo, qgis.core, landslide_mapper' || {
    echo "setup failed: the venv cannot import numpy/GDAL/PyQGIS/landslide_mapper" >&2; exit 1; }
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo)  setup; exec "$PY" -m landslide_mapper demo "$@" ;;
  test)  setup; export QT_QPA_PLATFORM=offscreen; exec "$PY" -m pytest -q -p no:cacheprovider tests "$@" ;;
  bench) setup; exec "$PY" bench/infer.py "$@" ;;
  package) setup; exec "$PY" tools/package_plugin.py --output "${1:-dist}" ;;
  screenshots)
    setup
    if ! command -v xvfb-run >/dev/null; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq xvfb >/dev/null
    fi
    exec tools/screenshots.sh "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
