#!/usr/bin/env bash
# Run every benchmark (issues 6, 11 and 19) in turn and collect the RESULT / GAIN lines at the end.
# Usage: bash benchmarks/run_all.sh [--quick]   (from the repository root, in the project's venv)
# About 25 minutes on 2 loaded cores; each script alone takes 0.5-8 minutes. Each one is stopped
# after BENCH_TIMEOUT seconds (default 600, quick 240; coreutils `timeout`), so the run always ends by itself.
# --quick (or BENCH_QUICK=1): tiny inputs, one repeat, about 3 minutes in all; the RESULT lines end in
# `quick` (printed, not judged). CI runs this.
# The exit status is non-zero if any script failed, overran, or printed no RESULT / GAIN line: the
# summary names it.
set -uo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    case "$arg" in
        --quick) export BENCH_QUICK=1 ;;
        *) echo "usage: bash benchmarks/run_all.sh [--quick]" >&2; exit 2 ;;
    esac
done
quick="${BENCH_QUICK:-}"
[ "$quick" = "0" ] && quick=""
limit="${BENCH_TIMEOUT:-$([ -n "$quick" ] && echo 240 || echo 600)}"
log="$(mktemp)"
out="$(mktemp)"
trap 'rm -f "$log" "$out"' EXIT
failed=()
for script in bench_flops bench_overhead bench_vs_realesrgan bench_scale bench_memory bench_onnx_vs_torch \
    explore_optimisations; do
    echo "### $script${quick:+ (quick)}"
    started=$SECONDS
    timeout --kill-after=30 "$limit" python "benchmarks/$script.py" | tee "$out"
    status=${PIPESTATUS[0]}
    cat "$out" >> "$log"
    echo "### $script: $((SECONDS - started)) s"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "### $script: stopped after ${limit} s" | tee -a "$log"
        failed+=("$script (timed out)")
    elif [ "$status" -ne 0 ]; then
        failed+=("$script (exit $status)")
    elif ! grep -qE '^(RESULT|GAIN) ' "$out"; then
        failed+=("$script (no RESULT or GAIN line)")
    fi
done
echo
echo "### summary ($(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')${quick:+, quick mode: figures printed, not judged})"
grep -E '^(RESULT|GAIN) ' "$log"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
