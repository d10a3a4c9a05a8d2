#!/usr/bin/env bash
# The plugin on a newer Debian's QGIS, in a root made with debootstrap (reused on later runs):
#   trixie  Debian 13: QGIS 3.40 LTR, Python 3.13, numpy 2 (the worker gets the full lock
#           requirements-worker-numpy2.txt)
#   sid     Debian unstable: QGIS 3.44 LTR, Python 3.14 (TensorFlow has no 3.14 release, so
#           the worker maps but cannot train: the training tests skip, saying why)
# The worker venv is made there by the plugin's own set-up (tasks/worker_env.py, which picks
# the pins for that host through tasks/worker_platform.py), and the whole test suite runs in
# it: the plugin, the Processing algorithms, the plugin ZIP through qgis_process, the dock.
#
#   tools/qgis_debian.sh RELEASE [pytest args]        as root; ~15 min and ~4 GB the first time
#                                                     (pytest args default to the whole suite)
#   tools/qgis_debian.sh RELEASE --screenshots [OUT]  tools/screenshots.sh in that QGIS instead
#
# Not part of ./dev.sh test: CI has neither root nor the time for a second Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# outside the checkout: the checkout is mounted inside it (read-only, so that deleting the
# root while mounted cannot reach the checkout), and ./dev.sh and git never see it
RELEASE=${1:-}
case "$RELEASE" in
  trixie|sid) shift ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
DEBIAN_ROOT=${QGIS_DEBIAN_ROOT:-/var/tmp/landslide_mapper_$RELEASE}
SHARED="$ROOT/../shared"
WORKER=/opt/landslide_mapper_worker
# the test tools the suite needs besides the worker's packages
TEST_PACKAGES="pytest-qgis==2.1.0 hypothesis==6.170.17 powerlaw==1.5"

[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap and chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

if [ ! -x "$DEBIAN_ROOT/usr/bin/qgis_process.bin" ]; then
  echo ">> Debian $RELEASE root in $DEBIAN_ROOT with its QGIS" >&2
  [ -x "$DEBIAN_ROOT/bin/bash" ] || debootstrap --variant=minbase "$RELEASE" "$DEBIAN_ROOT" http://deb.debian.org/debian >&2
  cp /etc/resolv.conf "$DEBIAN_ROOT/etc/"
  chroot "$DEBIAN_ROOT" bash -c "apt-get -o Acquire::Check-Valid-Until=false update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      qgis python3-qgis qgis-providers python3-gdal python3-rasterio python3-shapely python3-scipy \
      python3-matplotlib python3-venv python3-pip python3-pytest git xvfb xauth >/dev/null"
fi
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() { mkdir -p "$DEBIAN_ROOT$2"; mount "${@:3}" "$1" "$DEBIAN_ROOT$2"; mounts=("$DEBIAN_ROOT$2" "${mounts[@]}"); }
bind proc /proc -t proc
bind /dev /dev --bind
bind "$ROOT" /repo --bind -o ro
[ -d "$SHARED/data" ] && bind "$(realpath "$SHARED/data")" /shared/data --bind -o ro   # the real-data tests
cp /etc/resolv.conf "$DEBIAN_ROOT/etc/"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$DEBIAN_ROOT/etc/ssl/certs/"

# the checkout is importable as landslide_mapper, as ./dev.sh setup makes it here
mkdir -p build/pkgroot && ln -sfn ../.. build/pkgroot/landslide_mapper
# the worker is made again when its pins change (the lock files or the per-platform pins)
want=$(cat requirements-worker.txt requirements-worker-numpy2.txt tasks/worker_platform.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$DEBIAN_ROOT$WORKER/.tested-tools" 2>/dev/null)" != "$want" ]; then
  echo ">> worker venv $WORKER, made by the plugin's own set-up (tasks/worker_env.py)" >&2
  rm -rf "$DEBIAN_ROOT$WORKER"
  chroot "$DEBIAN_ROOT" env QT_QPA_PLATFORM=offscreen PYTHONPATH=/repo/build/pkgroot /usr/bin/python3 -c "
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
from landslide_mapper.tasks.environment_setup import EnvironmentSetupTask
task = EnvironmentSetupTask('$WORKER', base_python='/usr/bin/python3')
ok = task.run()
print('\n'.join(task.log_lines[-8:]))
raise SystemExit(0 if ok else 'the worker set-up failed: ' + task.error_message)"
  chroot "$DEBIAN_ROOT" bash -c "$WORKER/bin/pip install -q --disable-pip-version-check $TEST_PACKAGES && echo $want > $WORKER/.tested-tools"
fi
chroot "$DEBIAN_ROOT" bash -c "echo /repo/build/pkgroot > \$($WORKER/bin/python -c \
    'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')/landslide_mapper_dev.pth"
chroot "$DEBIAN_ROOT" qgis_process.bin --version 2>/dev/null | head -2 >&2

if [ "${1:-}" = "--screenshots" ]; then
  out=$(realpath -m "${2:-build/screenshots-$RELEASE}")
  rm -rf "$DEBIAN_ROOT/tmp/screens" && mkdir -p "$out"
  chroot "$DEBIAN_ROOT" env LANDSLIDE_MAPPER_PYTHON="$WORKER/bin/python" bash -c "cd /repo && tools/screenshots.sh /tmp/screens"
  cp "$DEBIAN_ROOT"/tmp/screens/* "$out/" && ls -1 "$out"
  exit
fi
chroot "$DEBIAN_ROOT" env QT_QPA_PLATFORM=offscreen LANDSLIDE_MAPPER_PYTHON="$WORKER/bin/python" \
  bash -c "cd /repo && $WORKER/bin/python -m pytest -q -p no:cacheprovider ${*:-tests}"
