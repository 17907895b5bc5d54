#!/usr/bin/env bash
# Run every benchmark (issues 6 and 11) in turn and collect the RESULT / GAIN lines at the end.
# Usage: bash benchmarks/run_all.sh   (from the repository root, in the project's venv)
# About 25 minutes on 2 loaded cores; each script alone takes 0.5-8 minutes. Each one is stopped
# after BENCH_TIMEOUT seconds (default 600; coreutils `timeout`), so the run always ends by itself:
# a script that overran or failed is named in the summary and makes the exit status non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
limit="${BENCH_TIMEOUT:-600}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=()
for script in bench_flops bench_overhead bench_vs_realesrgan bench_scale bench_memory bench_onnx_vs_torch \
    explore_optimisations; do
    echo "### $script"
    timeout --kill-after=30 "$limit" python "benchmarks/$script.py" | tee -a "$log"
    status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "### $script: stopped after ${limit} s" | tee -a "$log"
        failed+=("$script (timed out)")
    elif [ "$status" -ne 0 ]; then
        failed+=("$script (exit $status)")
    fi
done
echo
echo "### summary ($(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?'))"
grep -E '^(RESULT|GAIN) ' "$log"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
