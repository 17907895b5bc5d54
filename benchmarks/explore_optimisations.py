"""Optimisations of issue 6 not (or not yet) applied, each measured against the app as it is.

Prints ``GAIN <name> <ratio>`` lines: time of the variant / the app's, so < 1 is better.
Sections: other session options, the GroupNorm folding (graph_rewrites.py), tiles batched into
one run, an fp16 model on the CPU, and the compute of the tile overlap. Already applied in the
core, so no longer measured here: no spinning and no memory pattern on the CPU (denoiser.py),
the in-place Sampler.step and float32 Sampler.start (sampler.py), lazy previews (pipeline.py), and
attention as MatMul instead of Einsum (exporter/unet.py).
CUDA IO binding cannot be measured on a CPU-only machine: tests/core/test_cuda_iobinding.py checks
its correctness wherever CUDA exists.
Quick mode (``--quick`` / BENCH_QUICK=1): 64² and 128² steps, 2 tiles of 64² / 128² per batch, one round each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnx
import onnxruntime as ort
from _common import by_mode, feeds_for, machine, model_path, sr3_feeds, threads
from graph_macs import count_macs, sr3_sizes
from graph_rewrites import instance_norm_affine
from onnx import numpy_helper

from sr3_desktop.core.model_files import denoiser as denoiser_module
from sr3_desktop.core.model_files.card import read_card
from sr3_desktop.core.upscale import tiling
from sr3_desktop.core.upscale.tiling import plan_tiles

SIDE = by_mode(256, 64)
LARGE_SIDE = by_mode(512, 128)
"""The second size of the GroupNorm folding."""
BATCHES = by_mode(((128, 8), (256, 4)), ((64, 2), (128, 2)))
"""(tile side, tiles) of the batching section."""


def gain(name: str, value: float, note: str = "") -> None:
    print(f"GAIN {name} {value:.3f}" + (f"  ({note})" if note else ""), flush=True)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so load drift hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(by_mode(rounds, 1)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def options(**changes: object) -> ort.SessionOptions:
    opts = denoiser_module._session_options(["CPUExecutionProvider"])  # the app's own
    for key, value in changes.items():
        if key == "spinning":
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if value else "0")
        else:
            setattr(opts, key, value)
    return opts


def session(model: str | bytes, opts: ort.SessionOptions | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(model, opts or options(), providers=["CPUExecutionProvider"])


def session_options_section(path: Path) -> None:
    print(f"\n== other session options, one step at {SIDE}² (the app: {threads()} threads, ORT_ENABLE_ALL, arena, "
          "no memory pattern, no spinning)")
    level = ort.GraphOptimizationLevel
    variants = {
        "app": options(),
        "threads_1": options(intra_op_num_threads=1),
        "level_extended": options(graph_optimization_level=level.ORT_ENABLE_EXTENDED),
        "level_basic": options(graph_optimization_level=level.ORT_ENABLE_BASIC),
        "no_arena": options(enable_cpu_mem_arena=False),
    }
    feeds = sr3_feeds(SIDE, SIDE)
    sessions = {k: session(str(path), v) for k, v in variants.items()}
    times = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()})
    for name, seconds in times.items():
        if name != "app":
            gain(f"session_{name}", seconds / times["app"], f"{seconds:.3f} s vs {times['app']:.3f} s")


def randomised(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with random float weights, so a rewrite's output can be compared for real."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rng = np.random.default_rng(0)
    for init in out.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 1:
            init.CopyFrom(numpy_helper.from_array(rng.normal(0, 0.05, array.shape).astype(np.float32), init.name))
    return out


def graph_section(path: Path) -> None:
    print("\n== GroupNorm folding (proposed for exporter/export_onnx.py), one step")
    base = onnx.load(str(path))
    folded, count = instance_norm_affine(base)
    print(f"  {count} GroupNorm(C = groups) -> one InstanceNormalization each")
    if count == 0:
        print("  nothing to fold in this graph")
        return
    check = sr3_feeds(64, 64)
    random_base = randomised(base)  # rewrite after randomising: the folded affine must carry the new weights
    reference = session(random_base.SerializeToString()).run(None, check)[0]
    out = session(instance_norm_affine(random_base)[0].SerializeToString()).run(None, check)[0]
    print(f"  max |difference| on random weights {np.abs(out - reference).max():.1e} "
          f"(outputs up to {np.abs(reference).max():.1f})")
    sessions = {"app": session(str(path)), "instancenorm": session(folded.SerializeToString())}
    for side, rounds in ((SIDE, 3), (LARGE_SIDE, 1)):
        feeds = sr3_feeds(side, side)
        times = interleaved({k: (lambda s=s, f=feeds: s.run(None, f)) for k, s in sessions.items()}, rounds)
        gain(f"graph_instancenorm_{side}", times["instancenorm"] / times["app"],
             f"{times['instancenorm']:.3f} s vs {times['app']:.3f} s")


def batching_section(path: Path) -> None:
    print("\n== tiles per session.run (the pipeline batches up to the memory budget already)")
    app = session(str(path))
    for tile, count in BATCHES:
        singles = feeds_for([(1, 3, tile, tile)] * count)
        batched = feeds_for([(count, 3, tile, tile)])
        times = interleaved({
            "one_by_one": lambda singles=singles: [app.run(None, f) for f in singles],
            "batched": lambda batched=batched: app.run(None, batched[0]),
        }, rounds=2)
        gain(f"batch_{count}x{tile}", times["batched"] / times["one_by_one"],
             f"{count} tiles of {tile}² in one run: {times['batched']:.2f} s vs {times['one_by_one']:.2f} s")


def fp16_section(path: Path) -> None:
    print(f"\n== fp16 model (exporter --fp16, for GPUs) on this CPU, one step at {SIDE}²")
    fp16 = model_path("sr3", fp16=True)
    feeds = sr3_feeds(SIDE, SIDE)
    sessions = {"fp32": session(str(path)), "fp16": session(str(fp16))}
    times = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, rounds=2)
    size = fp16.stat().st_size / path.stat().st_size
    gain("fp16_on_cpu", times["fp16"] / times["fp32"], f"file {size:.2f} x; x86 CPUs lack fp16 kernels: GPU only")


def overlap_section(path: Path) -> None:
    multiple = read_card(path).size_multiple  # tiles are multiples of it (the pipeline's grid)
    print(f"\n== tile overlap: compute per output megapixel (counted, not timed; 512 px tiles, multiple {multiple})")
    cache: dict[tuple[int, int], float] = {}

    def gmac(h: int, w: int) -> float:
        if (h, w) not in cache:
            cache[(h, w)] = sum(count_macs(path, sr3_sizes(h, w)).values()) / 1e9
        return cache[(h, w)]

    base = gmac(512, 512) / (512 * 512 / 1e6)
    for margin in (16, 8, 4):
        per_mp = []
        for side in (1024, 2048):
            grid = plan_tiles(side, side, 512, multiple, margin)
            per_mp.append(len(grid) * gmac(grid.tile_height, grid.tile_width) / (side * side / 1e6))
        worst = max(*per_mp, base) / min(*per_mp, base)
        note = "today's automatic margin" if margin == tiling.MAX_MARGIN else "the margin before issue 11" \
            if margin == 16 else ""
        print(f"  margin {margin:2d} px: 1024² {per_mp[0]:.0f}, 2048² {per_mp[1]:.0f} GMAC/MP vs 512² {base:.0f}; "
              f"max/min {worst:.3f} {note}")
        gain(f"tile_margin_{margin}_compute_spread", worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    path = model_path("sr3")
    print(f"model {path.name}, {threads()} threads, {machine()}", flush=True)
    session_options_section(path)
    graph_section(path)
    batching_section(path)
    fp16_section(path)
    overlap_section(path)
    print(f"\nIO binding on CUDA: not measurable here ({', '.join(ort.get_available_providers())} built in, "
          f"no GPU); see tests/core/test_cuda_iobinding.py")


if __name__ == "__main__":
    main()
