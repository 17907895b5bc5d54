#!/usr/bin/env bash
# Train both bundled models on a GPU for a wall-clock budget, then export, verify, search and evaluate.
#
#   bash scripts/train_gpu.sh MINUTES OUT_DIR [PHOTOS_DIR]
#
# Writes OUT_DIR/regression-photo-4x.onnx, OUT_DIR/sr3-photo-4x.onnx (its presets chosen by
# search-schedule), OUT_DIR/evaluation-sr3-photo-4x.json (+ comparison PNGs), OUT_DIR/schedule-search.json
# and OUT_DIR/timings.txt; the runs (checkpoints, logs) and the prepared photos stay in OUT_DIR/work.
# Needs only torch, onnx, onnxruntime, numpy, Pillow and scikit-image, and no network.
#
# PHOTOS_DIR: a folder of .jpg photos (scripts/prepare_training_data.py holds out bridge.jpg and umang.jpg
#   when present and adds scikit-image's photos to the validation set). Default: data/photos (an ignored
#   folder inside the repository, for machines without ../shared), else ../shared/datasets/photos-train;
#   plus data/photos-extra when scripts/fetch_photos.py has filled it (carry it to a machine without network).
#
# The budget: about 30 % of MINUTES trains the regression model (recipes/regression-photo-4x.toml), about
# 55 % the SR3 model (recipes/sr3-photo-4x.toml, conditioned on the regression model just trained), and the
# rest exports, verifies, searches the presets (quick settings) and evaluates. Training stops by itself
# (train --max-minutes); each stage's share is recomputed from the time really left, so the whole script
# ends near MINUTES. By default both models continue the committed ones (train --init-from, which keeps
# their U-Net): models/next/ (the low-resolution U-Nets of recipes/*.toml, in training) when present, else
# the bundled resources/models/.
#
# Environment (defaults in brackets):
#   PYTHON [python]            the interpreter (the GPU machine has no virtualenv)
#   DEVICE [auto]              auto | cuda | cpu, for training; ORT_DEVICE [auto] for evaluation
#   FRESH [0]                  1: the recipes' own U-Nets (recipes/*.toml) trained from scratch, not the bundled
#                              models continued (for a new architecture, whose bundled ancestor does not exist)
#   WIDE [0]                   1: a wider U-Net (BASE_CHANNELS [64], RES_BLOCKS [2]) trained from scratch,
#                              since no bundled weights fit it
#   BATCH, CROP                batch size and HR crop [CUDA: 64 and 128; CPU: the recipe's 16 and 64]
#   WORKERS                    data loader processes [CUDA: 6; CPU: 0]; THREADS: torch CPU threads [torch's]
#   LR                         learning rate [the recipe's]
#   REG_SHARE [0.30], SR3_SHARE [0.55]   shares of MINUTES for the two training runs
#   POST_RESERVE [MINUTES * 0.15]        minutes kept back for export, verify, search and evaluate
#   VAL_EVERY [1000], CHECKPOINT_EVERY [500]   training bookkeeping (steps)
#   QUICK [1 when MINUTES < 10]          tiny search / evaluation settings (a smoke test of every stage)
#   SEARCH_SIGMAS [0.1,0.2,0.3,0.45]  SEARCH_END_RATIOS [0.5]  SEARCH_BP [0,1,2]  SEARCH_CAPS [4,6]
#   SEARCH_KNEES [5e-4,1e-3] (quick: 5e-4)   knees of the texture cap (its flat_amplitude) tried with each cap
#   SEARCH_JPEG [75]   JPEG quality of the crops the compressed preset is searched on (0: no compressed preset)
#   QUALITY_STEPS [20]  QUALITY_CAPS [0,4,6]  QUALITY_BP [0,1]   (quick: caps 0,4 and QUALITY_BP 0)
#   SEARCH_CROPS [2]  SEARCH_IMAGES [all]  SEARCH_TIMEOUT [max(120 s, half the reserve)]
#                              (past the timeout the model keeps its default presets)
#   EVAL_CROP [256]  EVAL_CROPS [4]  EVAL_IMAGES [all]  EVAL_SEEDS [3]  EVAL_JPEG [75]
#                              (search and evaluation share EVAL_CROP: their cells are disjoint only on one grid)
#   WORK [OUT_DIR/work]        runs and prepared data; DATA [WORK/data]: reused when DATA/train exists
#   REG_NAME ["Regression Photo 4x"], SR3_NAME ["SR3 Photo 4x"]   card names (the SR3 card names its regression)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: bash scripts/train_gpu.sh MINUTES OUT_DIR [PHOTOS_DIR]" >&2
  exit 2
fi
MINUTES=$1
OUT=$2
if [ -n "${3:-}" ]; then PHOTOS=$3
elif [ -d data/photos ]; then PHOTOS=data/photos
else PHOTOS=../shared/datasets/photos-train
fi
PY=${PYTHON:-python}
DEVICE=${DEVICE:-auto}
ORT_DEVICE=${ORT_DEVICE:-auto}
WORK=${WORK:-$OUT/work}
DATA=${DATA:-$WORK/data}
REG_NAME=${REG_NAME:-Regression Photo 4x}
SR3_NAME=${SR3_NAME:-SR3 Photo 4x}

calc() { awk "BEGIN { v = $1; printf \"%.4f\", v }"; }
STARTED=$(date +%s)
DEADLINE=$(calc "$STARTED + 60 * $MINUTES")
elapsed() { echo $(( $(date +%s) - STARTED )); }
left_minutes() { calc "($DEADLINE - $(date +%s)) / 60"; }
stage_minutes() {  # min(share x MINUTES, the time left - what the later stages need), at least 0.1
  awk "BEGIN { m = $1 * $MINUTES; l = $(left_minutes) - $2; if (l < m) m = l; if (m < 0.1) m = 0.1; printf \"%.4f\", m }"
}
log() { echo "[train_gpu $(elapsed)s] $*"; }
mark() { echo "$1 $(elapsed)" >> "$OUT/timings.txt"; }

awk "BEGIN { exit !($MINUTES > 0) }" || { echo "MINUTES must be a positive number, got $MINUTES" >&2; exit 2; }
if [ -d "$WORK/runs" ]; then
  echo "$WORK/runs exists: choose a new OUT_DIR (or WORK) for a new round of training" >&2
  exit 2
fi
mkdir -p "$OUT" "$WORK/runs"
: > "$OUT/timings.txt"

# --- device and the bundled models ---------------------------------------------------------------
if [ "$DEVICE" = cpu ]; then CUDA=0
else CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
fi
if [ "$DEVICE" = cuda ] && [ "$CUDA" != 1 ]; then echo "DEVICE=cuda but torch sees no CUDA device" >&2; exit 2; fi
if [ -f models/next/regression-photo-4x.onnx ]; then MODELS=models/next  # the recipes' low-resolution U-Nets
elif [ -f resources/models/regression-photo-4x.onnx ]; then MODELS=resources/models
elif [ -f sr3_desktop/resources/models/regression-photo-4x.onnx ]; then MODELS=sr3_desktop/resources/models
else MODELS=""
fi
QUICK=${QUICK:-$(awk "BEGIN { print ($MINUTES < 10) ? 1 : 0 }")}
POST_RESERVE=${POST_RESERVE:-$(calc "0.15 * $MINUTES")}

TRAIN=(--device "$DEVICE" --steps 100000000 --val-every "${VAL_EVERY:-1000}"
       --checkpoint-every "${CHECKPOINT_EVERY:-500}")
if [ "$CUDA" = 1 ]; then
  TRAIN+=(--batch-size "${BATCH:-64}" --crop "${CROP:-128}" --workers "${WORKERS:-6}")
else
  if [ -n "${BATCH:-}" ]; then TRAIN+=(--batch-size "$BATCH"); fi
  if [ -n "${CROP:-}" ]; then TRAIN+=(--crop "$CROP"); fi
  if [ -n "${WORKERS:-}" ]; then TRAIN+=(--workers "$WORKERS"); fi
fi
if [ -n "${THREADS:-}" ]; then TRAIN+=(--threads "$THREADS"); fi
if [ -n "${LR:-}" ]; then TRAIN+=(--lr "$LR"); fi
if [ "${FRESH:-0}" = 1 ]; then
  REG_INIT=() SR3_INIT=()
  log "FRESH=1: the recipes' U-Nets, trained from scratch"
elif [ "${WIDE:-0}" = 1 ]; then
  TRAIN+=(--base-channels "${BASE_CHANNELS:-64}" --num-res-blocks "${RES_BLOCKS:-2}")
  REG_INIT=() SR3_INIT=()
  log "WIDE=1: a ${BASE_CHANNELS:-64}-channel U-Net with ${RES_BLOCKS:-2} res blocks, trained from scratch"
elif [ -n "$MODELS" ]; then
  REG_INIT=(--init-from "$MODELS/regression-photo-4x.onnx") SR3_INIT=(--init-from "$MODELS/sr3-photo-4x.onnx")
  log "continuing the committed models in $MODELS"
else
  REG_INIT=() SR3_INIT=()
  log "warning: no bundled models found (resources/models/); training from scratch"
fi
log "$MINUTES min on $([ "$CUDA" = 1 ] && echo CUDA || echo the CPU), photos $PHOTOS, out $OUT, quick=$QUICK"

# --- data -------------------------------------------------------------------------------------------
if [ -d "$DATA/train" ] && [ -n "$(ls -A "$DATA/train")" ]; then
  log "reusing the prepared photos in $DATA"
else
  if ! ls "$PHOTOS"/*.jpg > /dev/null 2>&1; then
    echo "no .jpg photos in $PHOTOS (scripts/prepare_training_data.py reads *.jpg)" >&2
    exit 2
  fi
  EXTRA=()  # more real photos (scripts/fetch_photos.py), when fetched into the ignored data/photos-extra
  if ls data/photos-extra/*.jpg > /dev/null 2>&1; then EXTRA=(--photos data/photos-extra); fi
  "$PY" scripts/prepare_training_data.py --photos "$PHOTOS" ${EXTRA[@]+"${EXTRA[@]}"} --out "$DATA"
fi
mark data

# --- regression ---------------------------------------------------------------------------------------
REG_ONNX=$OUT/regression-photo-4x.onnx
SR3_ONNX=$OUT/sr3-photo-4x.onnx
SR3_SHARE=${SR3_SHARE:-0.55}
REG_MIN=$(stage_minutes "${REG_SHARE:-0.30}" "$(calc "$SR3_SHARE * $MINUTES + $POST_RESERVE")")
log "regression: training for $REG_MIN min"
"$PY" -m exporter train --config recipes/regression-photo-4x.toml ${REG_INIT[@]+"${REG_INIT[@]}"} "${TRAIN[@]}" \
  --data "$DATA/train" --out "$WORK/runs/regression" --max-minutes "$REG_MIN"
"$PY" -m exporter export "$WORK/runs/regression" -o "$REG_ONNX" --name "$REG_NAME"
"$PY" -m exporter verify "$REG_ONNX" --ckpt "$WORK/runs/regression"
mark regression

# --- SR3, conditioned on the regression model just trained --------------------------------------------
SR3_MIN=$(stage_minutes "$SR3_SHARE" "$POST_RESERVE")
log "sr3: training for $SR3_MIN min"
"$PY" -m exporter train --config recipes/sr3-photo-4x.toml ${SR3_INIT[@]+"${SR3_INIT[@]}"} "${TRAIN[@]}" \
  --condition-model "$REG_ONNX" --data "$DATA/train" --out "$WORK/runs/sr3" --max-minutes "$SR3_MIN"
"$PY" -m exporter export "$WORK/runs/sr3" -o "$SR3_ONNX" --name "$SR3_NAME"
"$PY" -m exporter verify "$SR3_ONNX" --ckpt "$WORK/runs/sr3"
mark sr3

# --- presets and evaluation ----------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  SEARCH=(--sigmas "${SEARCH_SIGMAS:-0.2,0.45}" --end-ratios "${SEARCH_END_RATIOS:-0.5}"
          --back-projection "${SEARCH_BP:-0,1}" --texture-caps "${SEARCH_CAPS:-4}"
          --flat-amplitudes "${SEARCH_KNEES:-5e-4}" --grains "${SEARCH_GRAINS:-0,1.2}" --jpeg "${SEARCH_JPEG:-75}"
          --jpeg-texture-caps 4
          --jpeg-flat-amplitudes 2e-3
          --quality-steps "${QUALITY_STEPS:-4}" --quality-texture-caps "${QUALITY_CAPS:-0,4}"
          --quality-back-projection "${QUALITY_BP:-0}"
          --crop "${EVAL_CROP:-64}" --crops-per-image "${SEARCH_CROPS:-1}" --max-images "${SEARCH_IMAGES:-2}")
  EVAL=(--crop "${EVAL_CROP:-64}" --crops-per-image "${EVAL_CROPS:-1}" --max-images "${EVAL_IMAGES:-2}"
        --seeds "${EVAL_SEEDS:-1}" --jpeg "${EVAL_JPEG:-75}")
else
  SEARCH=(--sigmas "${SEARCH_SIGMAS:-0.1,0.2,0.3,0.45}" --end-ratios "${SEARCH_END_RATIOS:-0.5}"
          --back-projection "${SEARCH_BP:-0,1,2}" --texture-caps "${SEARCH_CAPS:-4,6}"
          --flat-amplitudes "${SEARCH_KNEES:-5e-4,1e-3}" --grains "${SEARCH_GRAINS:-0,0.9,1.2}"
          --jpeg "${SEARCH_JPEG:-75}"
          --quality-steps "${QUALITY_STEPS:-20}" --quality-texture-caps "${QUALITY_CAPS:-0,4,6}"
          --quality-back-projection "${QUALITY_BP:-0,1}"
          --crop "${EVAL_CROP:-256}" --crops-per-image "${SEARCH_CROPS:-2}")
  if [ -n "${SEARCH_IMAGES:-}" ]; then SEARCH+=(--max-images "$SEARCH_IMAGES"); fi
  EVAL=(--crop "${EVAL_CROP:-256}" --crops-per-image "${EVAL_CROPS:-4}" --seeds "${EVAL_SEEDS:-3}"
        --jpeg "${EVAL_JPEG:-75}")
  if [ -n "${EVAL_IMAGES:-}" ]; then EVAL+=(--max-images "$EVAL_IMAGES"); fi
fi
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-$(awk "BEGIN { t = 30 * $POST_RESERVE; printf \"%d\", (t < 120) ? 120 : t }")}
LIMIT=()
if command -v timeout > /dev/null; then LIMIT=(timeout "$SEARCH_TIMEOUT"); fi
log "search-schedule (at most $SEARCH_TIMEOUT s)"
if ! ${LIMIT[@]+"${LIMIT[@]}"} "$PY" -m exporter search-schedule "$SR3_ONNX" --regression "$REG_ONNX" \
    --data "$DATA/val" --device "$ORT_DEVICE" --report "$OUT/schedule-search.json" "${SEARCH[@]}"; then
  log "warning: search-schedule did not finish; $SR3_ONNX keeps its default presets"
fi
mark search
log "evaluate"
"$PY" -m exporter evaluate "$SR3_ONNX" --regression "$REG_ONNX" --data "$DATA/val" --device "$ORT_DEVICE" \
  --out "$OUT/evaluation-sr3-photo-4x.json" "${EVAL[@]}"
mark evaluate
log "done in $(elapsed) s (budget $MINUTES min): $(ls "$OUT" | tr '\n' ' ')"
