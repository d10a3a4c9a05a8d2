#!/usr/bin/env bash
# Screenshots as a user sees them: starts the real QGIS GUI under Xvfb with the plugin
# installed in a throw-away profile, maps the demo scene through the dock (worker process,
# QgsTask), and saves PNGs of the dock's tabs, the map with the results and the chart
# panel, then runs the same mapping from the Processing algorithm dialog, into OUT
# (default build/screenshots).
#
#   tools/screenshots.sh [OUT]        (run ./dev.sh setup once first)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${1:-build/screenshots}")
PY="${LANDSLIDE_MAPPER_PYTHON:-$ROOT/.venv/bin/python}"     # the worker, and the scene generator
[ -x "$PY" ] || { echo "run ./dev.sh setup first (no .venv)" >&2; exit 2; }
command -v xvfb-run >/dev/null || { echo "xvfb-run is missing: apt-get install xvfb" >&2; exit 2; }

WORK=$(mktemp -d /tmp/landslide_mapper_screens.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PROFILE="$WORK/profiles/profiles/screens"
mkdir -p "$PROFILE/python/plugins" "$PROFILE/QGIS" "$OUT"
rm -f "$OUT"/*.png "$OUT/done.json"
ln -s "$ROOT" "$PROFILE/python/plugins/landslide_mapper"
cat > "$PROFILE/QGIS/QGIS3.ini" <<INI
[PythonPlugins]
landslide_mapper=true
[qgis]
checkVersion=false
showTips322=false
[UI]
hidewelcome=true
INI

echo ">> demo scene (512 px, 2016-2019)" >&2
"$PY" -m landslide_mapper scene --size 512 --output "$WORK/scene" >/dev/null

echo ">> QGIS under Xvfb" >&2
export LM_SCENE_DIR="$WORK/scene" LM_OUT="$OUT" LM_WORKER_PYTHON="$PY" LM_RUNS="$WORK/runs"
export QT_QPA_PLATFORM=xcb
timeout 1800 xvfb-run -a -s "-screen 0 1600x1000x24" \
  qgis --profiles-path "$WORK/profiles" --profile screens --nologo --noversioncheck \
       --code "$ROOT/tools/screenshots_in_qgis.py" >"$WORK/qgis.log" 2>&1 || true
if [ ! -f "$OUT/done.json" ]; then
  echo "QGIS did not finish the screenshots; its log:" >&2; tail -40 "$WORK/qgis.log" >&2; exit 1
fi
cat "$OUT/done.json"
ls -1 "$OUT"/*.png
