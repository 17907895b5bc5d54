#!/usr/bin/env bash
# Export, annotate, schedule-search and evaluate the bundled models from finished training runs.
#   RUNS=/work/runs bash scripts/build_bundled_models.sh
# Training (see docs/models.md):
#   python scripts/prepare_training_data.py --out $RUNS/data
#   python -m exporter train --config recipes/sr3-photo-4x.toml --data $RUNS/data/train --out $RUNS/sr3-photo-4x --threads 1
#   python -m exporter train --config recipes/regression-photo-4x.toml --data $RUNS/data/train --out $RUNS/regression-photo-4x --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs}
MODELS=resources/models
SR3=$MODELS/sr3-photo-4x.onnx
REG=$MODELS/regression-photo-4x.onnx
VAL=$RUNS/data/val
mkdir -p "$MODELS" docs/evaluation
python -m exporter export "$RUNS/regression-photo-4x" -o "$REG"
python -m exporter export "$RUNS/sr3-photo-4x" -o "$SR3"
DATA="lomiri-wallpapers-16.04 photos (13 train, 2 held out), 64 px HR crops at full and half size"
python scripts/annotate_card.py "$REG" --name "Regression Photo 4x" --data "$DATA" --credits recipes/photo-credits.txt \
  --description "The regression baseline of SR3: the same U-Net, trained to predict the HR image (as a residual over bicubic) directly. Highest PSNR, smoother than SR3."
python scripts/annotate_card.py "$SR3" --name "SR3 Photo 4x" --data "$DATA" --credits recipes/photo-credits.txt \
  --description "SR3 denoiser for 4x photos. v-prediction of the residual HR - bicubic (SRDiff-style), trained on 2 CPU cores. 'quality' runs the paper's full chain from pure noise; 'fast' and 'balanced' start from the noised regression or bicubic output (Come-Closer-Diffuse-Faster)."
python -m exporter verify "$SR3" --ckpt "$RUNS/sr3-photo-4x"
python -m exporter verify "$REG" --ckpt "$RUNS/regression-photo-4x"
python -m exporter search-schedule "$SR3" --regression "$REG" --data "$VAL" --budgets 10,20,50 --quality-steps 100 --strengths 0.15,0.3,0.5 \
  --crop 128 --max-images 4 --crops-per-image 1 --report docs/evaluation/schedule-search.json
python -m exporter evaluate "$SR3" --regression "$REG" --data "$VAL" --crop 256 --crops-per-image 1 \
  --out docs/evaluation/sr3-photo-4x.json --png docs/evaluation/comparison.png
python -m exporter evaluate "$REG" --data "$VAL" --crop 256 --crops-per-image 1 --out docs/evaluation/regression-photo-4x.json
python scripts/annotate_card.py "$REG" --evaluation docs/evaluation/regression-photo-4x.json
python scripts/annotate_card.py "$SR3" --evaluation docs/evaluation/sr3-photo-4x.json
ls -la "$MODELS"
