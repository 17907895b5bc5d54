"""Figure 1: FLOP efficiency of one refinement step (one denoiser session.run at batch 1).

MACs come from the SR3 graph's Conv / MatMul / Gemm / Einsum nodes (graph_macs.py); the machine's
fp32 peak is the better of numpy's and onnxruntime's 2048^2 matmul, with the same thread count,
measured in this run. Target: achieved / peak >= 0.5 at a 256^2 output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sr3_desktop.core.denoiser import default_threads  # noqa: E402

THREADS = default_threads()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)  # before numpy loads its BLAS

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from _common import machine, median_time, model_path, result, sr3_feeds  # noqa: E402
from graph_macs import count_macs, sr3_sizes  # noqa: E402
from sr3_desktop.core.denoiser import OnnxDenoiser  # noqa: E402

SIDES = (128, 256, 512)
PEAK_N = 2048


def numpy_peak() -> float:
    a = np.random.default_rng(0).standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
    return 2 * PEAK_N**3 / median_time(lambda: a @ b) / 1e9


def ort_peak() -> float:
    shape = [PEAK_N, PEAK_N]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(shape, dtype=np.float32) for n in ("a", "b")}
    onnx.checker.check_model(model)
    return 2 * PEAK_N**3 / median_time(lambda: session.run(None, feeds)) / 1e9


def main() -> None:
    path = model_path("sr3")
    denoiser = OnnxDenoiser(path, "cpu")
    session = denoiser._session  # the app's own session (its options), timed bare
    print(f"model {path.name}, {THREADS} threads, {machine()}", flush=True)
    peak_np, peak_ort = numpy_peak(), ort_peak()
    peak = max(peak_np, peak_ort)
    print(f"fp32 matmul {PEAK_N}^2: numpy {peak_np:.1f} GFLOP/s, onnxruntime {peak_ort:.1f} GFLOP/s")
    print(f"{'output':>8} {'GMAC':>8} {'(conv':>7} {'attn)':>6} {'step s':>8} {'GFLOP/s':>8} {'/ peak':>7}")
    ratios = {}
    for side in SIDES:
        macs = count_macs(path, sr3_sizes(side, side))
        feeds = sr3_feeds(side, side)
        seconds = median_time(lambda feeds=feeds: session.run(None, feeds), repeats=3 if side < 512 else 1)
        gflops = 2 * sum(macs.values()) / seconds / 1e9
        ratios[side] = gflops / peak
        print(f"{side:>7}² {sum(macs.values()) / 1e9:8.2f} {macs['Conv'] / 1e9:7.2f} {macs['Einsum'] / 1e9:6.2f} "
              f"{seconds:8.3f} {gflops:8.1f} {ratios[side]:7.2f}")
    peak_after = numpy_peak()  # the load on a shared machine moves; show how much
    print(f"numpy peak again after the steps: {peak_after:.1f} GFLOP/s")
    print(result("flops_peak_gflops", peak, ">=", 0, 1).replace(" ok", " info"))
    print(result("flops_efficiency_256", ratios[256], ">=", 0.5, 2))


if __name__ == "__main__":
    main()
