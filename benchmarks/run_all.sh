#!/usr/bin/env bash
# Run every benchmark of issue 6 in turn and collect the RESULT / GAIN lines at the end.
# Usage: bash benchmarks/run_all.sh   (from the repository root, in the project's venv)
# About 10 minutes on 2 loaded cores; each script alone takes 0.5-3.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for script in bench_flops bench_overhead bench_vs_realesrgan bench_scale bench_onnx_vs_torch; do
    echo "### $script"
    python "benchmarks/$script.py" | tee -a "$log"
done
echo "### explore_optimisations"
python benchmarks/explore_optimisations.py | tee -a "$log"
echo
echo "### summary ($(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'))"
grep -E '^(RESULT|GAIN) ' "$log"
