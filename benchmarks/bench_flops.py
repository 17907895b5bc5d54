"""Figure 1: FLOP efficiency of one refinement step (one denoiser session.run at batch 1).

MACs come from the SR3 graph's Conv / MatMul / Gemm (and older graphs' Einsum) nodes (graph_macs.py); the machine's
fp32 peak is the better of numpy's and onnxruntime's 2048^2 matmul, with the same thread count,
measured in this run. Target: achieved / peak >= 0.5 at a 256^2 output.
Quick mode (``--quick`` / BENCH_QUICK=1): one 64^2 step against a 512^2 matmul, one round.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# denoiser.default_threads() without importing numpy yet (checked against it in main)
_LOGICAL = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
THREADS = int(os.environ.get("SR3_THREADS") or (_LOGICAL // 2 if _LOGICAL >= 4 else _LOGICAL))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)  # before numpy loads its BLAS

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from _common import by_mode, machine, model_path, result, sr3_feeds  # noqa: E402
from graph_macs import attention_macs, count_macs, sr3_sizes  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from sr3_desktop.core.model_files.denoiser import OnnxDenoiser, default_threads  # noqa: E402

SIDES = by_mode((128, 256, 512), (64,))
FIGURE_SIDE = by_mode(256, 64)
"""The output side of the RESULT line (and of the op profile)."""
PEAK_N = by_mode(2048, 512)
ROUNDS = by_mode(3, 1)


def numpy_peak() -> float:
    a = np.random.default_rng(0).standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    a @ b  # warm-up
    start = time.perf_counter()
    a @ b
    return 2 * PEAK_N**3 / (time.perf_counter() - start) / 1e9


def ort_peak_session() -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
    shape = [PEAK_N, PEAK_N]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(shape, dtype=np.float32) for n in ("a", "b")}
    session.run(None, feeds)  # warm-up
    return session, feeds


def op_profile(path: Path, side: int = FIGURE_SIDE) -> list[tuple[str, float]]:
    """Share of one step's kernel time per op type (onnxruntime's profiler, the app's options)."""
    import json

    from sr3_desktop.core.model_files import denoiser

    options = denoiser._session_options(["CPUExecutionProvider"])
    options.enable_profiling = True
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = sr3_feeds(side, side)
    for _ in range(2):
        session.run(None, feeds)
    trace = Path(session.end_profiling())
    totals: dict[str, float] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"]
    trace.unlink()
    whole = sum(totals.values())
    return sorted(((op, t / whole) for op, t in totals.items()), key=lambda item: -item[1])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    assert default_threads() == THREADS, "the BLAS thread count must be the app's"
    path = model_path("sr3")
    denoiser = OnnxDenoiser(path, "cpu")
    session = denoiser._session  # the app's own session (its options), timed bare
    print(f"model {path.name}, {THREADS} threads, {machine()}", flush=True)
    peak_session, peak_feeds = ort_peak_session()
    flop_peak = 2 * PEAK_N**3 / 1e9
    macs = {side: count_macs(path, sr3_sizes(side, side)) for side in SIDES}
    feeds = {side: sr3_feeds(side, side) for side in SIDES}
    for side in SIDES:
        session.run(None, feeds[side])  # warm-up: first-run allocations per shape
    # rounds of (numpy peak, onnxruntime peak, one step per size): the load on a shared machine
    # moves, so each step is compared with the peak measured next to it
    rows: dict[int, list[tuple[float, float]]] = {side: [] for side in SIDES}
    peaks: list[tuple[float, float]] = []
    for _ in range(ROUNDS):
        for side in SIDES:
            if side == 512 and len(rows[512]) >= 1:
                continue  # one 512² step is enough (about 4 s here)
            peak = (numpy_peak(), flop_peak / timed(lambda: peak_session.run(None, peak_feeds)))
            peaks.append(peak)
            seconds = timed(lambda side=side: session.run(None, feeds[side]))
            rows[side].append((seconds, max(peak)))
    print(f"fp32 matmul {PEAK_N}² peak (GFLOP/s): numpy " + ", ".join(f"{p[0]:.0f}" for p in peaks)
          + "; onnxruntime " + ", ".join(f"{p[1]:.0f}" for p in peaks))
    print(f"{'output':>8} {'GMAC':>8} {'conv':>7} {'attn':>6} {'step s':>8} {'GFLOP/s':>8} {'/ peak':>7}")
    ratios = {}
    for side in SIDES:
        total = sum(macs[side].values())
        per_round = [2 * total / s / 1e9 / p for s, p in rows[side]]
        ratios[side] = statistics.median(per_round)
        seconds = statistics.median(s for s, _ in rows[side])
        print(f"{side:>7}² {total / 1e9:8.2f} {macs[side]['Conv'] / 1e9:7.2f} {attention_macs(macs[side]) / 1e9:6.2f} "
              f"{seconds:8.3f} {2 * total / seconds / 1e9:8.1f} {ratios[side]:7.2f}")
    shares = op_profile(path)
    print(f"  kernel time by op at {FIGURE_SIDE}² (onnxruntime profiler): "
          + ", ".join(f"{op} {share:.0%}" for op, share in shares if share >= 0.02))
    print(result(f"flops_efficiency_{FIGURE_SIDE}", ratios[FIGURE_SIDE], ">=", 0.5, 2))


if __name__ == "__main__":
    main()
