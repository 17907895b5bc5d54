#!/usr/bin/env bash
# Export, annotate, verify, schedule-search and evaluate the bundled models from finished training runs.
#   RUNS=/work/runs bash scripts/build_bundled_models.sh
# Training (docs/models.md has the measured times). Each round continues from the committed models:
#   python scripts/prepare_training_data.py --photos ../shared/datasets/photos-train --out $RUNS/data
#   python -m exporter train --config recipes/regression-photo-4x.toml --init-from resources/models/regression-photo-4x.onnx \
#     --data $RUNS/data/train --out $RUNS/regression-photo-4x --threads 2
#   python -m exporter train --config recipes/sr3-photo-4x.toml --init-from resources/models/sr3-photo-4x.onnx \
#     --condition-model $RUNS/regression-photo-4x.onnx --data $RUNS/data/train --out $RUNS/sr3-photo-4x --threads 2
# (export the new regression model to $RUNS/regression-photo-4x.onnx first: the SR3 network is trained on
# the output of the regression model it will be paired with.)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs}
PY=${PY:-python}
MODELS=resources/models
SR3=$MODELS/sr3-photo-4x.onnx
REG=$MODELS/regression-photo-4x.onnx
VAL=$RUNS/data/val
EVAL=docs/evaluation
mkdir -p "$MODELS" "$EVAL"
$PY -m exporter export "$RUNS/regression-photo-4x" -o "$REG" --name "Regression Photo 4x"
# SR3_ONNX: bundle an SR3 model exported earlier from the run (an EMA snapshot) instead of the run's last state.
if [ -n "${SR3_ONNX:-}" ]; then cp "$SR3_ONNX" "$SR3"; else $PY -m exporter export "$RUNS/sr3-photo-4x" -o "$SR3"; fi
DATA="lomiri-wallpapers-16.04 photos (13 train, 2 held out) and scikit-image photos (held out); 64 px HR crops at full and half size, half of the batches degraded (JPEG q30-95, blur, noise, resize kernels)"
$PY scripts/annotate_card.py "$REG" --data "$DATA" --credits recipes/photo-credits.txt \
  --description "The regression baseline of SR3, and the estimate SR3 refines: the same U-Net, trained to predict the HR image (as a residual over bicubic) in one pass, half of the time on degraded (JPEG, blurred, noisy) inputs. Highest PSNR, smooth fine texture."
$PY scripts/annotate_card.py "$SR3" --name "SR3 Photo 4x" --data "$DATA" --credits recipes/photo-credits.txt \
  --description "SR3 denoiser for 4x photos, anchored on the regression model (predict-and-refine): it sees the regression output and diffuses the residual HR - regression, predicting x0, trained with L1 + gradient + Fourier-magnitude losses on 2 CPU cores. 'fast' and 'balanced' refine the regression output noised to a small sigma in 1 or 2 steps; 'quality' runs the paper's full chain from pure noise."
$PY -m exporter verify "$REG" --ckpt "$RUNS/regression-photo-4x"
if [ -n "${SR3_ONNX:-}" ]; then $PY -m exporter verify "$SR3"; else $PY -m exporter verify "$SR3" --ckpt "$RUNS/sr3-photo-4x"; fi
# Presets are chosen on the search crops, scored on the disjoint report crops.
$PY -m exporter search-schedule "$SR3" --regression "$REG" --data "$VAL" --sigmas 0.05,0.1,0.15,0.2,0.3,0.45 \
  --end-ratios 0.33,0.5 --back-projection 0,1,2,3 --quality-steps 50 --report "$EVAL/schedule-search.json"
$PY -m exporter evaluate "$REG" --data "$VAL" --out "$EVAL/regression-photo-4x.json"
SHORT=$($PY -c "from sr3_desktop.core.model_files.card import read_card
print(' '.join('--preset ' + n for n in read_card('$SR3').preset_names() if n != 'quality'))")
# shellcheck disable=SC2086  # one word per flag
$PY -m exporter evaluate "$SR3" --regression "$REG" --data "$VAL" $SHORT \
  --out "$EVAL/sr3-photo-4x.json" --png "$EVAL/comparison.png"
$PY -m exporter evaluate "$SR3" --regression "$REG" --data "$VAL" --preset quality --seeds "${QUALITY_SEEDS:-3}" \
  --jpeg 0 --out "$EVAL/sr3-photo-4x-quality.json"
$PY scripts/annotate_card.py "$REG" --evaluation "$EVAL/regression-photo-4x.json"
$PY scripts/annotate_card.py "$SR3" --evaluation "$EVAL/sr3-photo-4x.json" "$EVAL/sr3-photo-4x-quality.json"
$PY scripts/eval_table.py "$EVAL/regression-photo-4x.json" "$EVAL/sr3-photo-4x.json" "$EVAL/sr3-photo-4x-quality.json"
ls -la "$MODELS"
