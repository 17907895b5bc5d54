"""The optimisations of issue 6, each measured against the app as it is (ratios inside one run).

Prints ``GAIN <name> <ratio>`` lines: time (or memory) of the variant / the app's, so < 1 is better.
Sections: session options, graph rewrites (graph_rewrites.py), tiles batched into one run, the
sampler's buffers (prototypes.lean_step), preview conversions, an fp16 model on the CPU, and the
compute of the tile overlap. ``--memory`` adds the peak-RSS breakdown of a 4096² upscale
(bench_scale.py's child, one proposed change at a time; about 2 more minutes).
CUDA IO binding cannot be measured on a CPU-only machine: tests/core/test_cuda_iobinding.py checks
its correctness wherever CUDA exists.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnx
import onnxruntime as ort
from _common import feeds_for, machine, model_path, peak_rss_bytes, sr3_feeds, threads
from graph_macs import count_macs, sr3_sizes
from graph_rewrites import einsum_to_matmul, instance_norm_affine
from onnx import numpy_helper
from prototypes import lean_start, lean_step

from sr3_desktop.core import denoiser as denoiser_module
from sr3_desktop.core.pipeline import from_model
from sr3_desktop.core.sampler import Sampler
from sr3_desktop.core.tiling import plan_tiles

SIDE = 256


def gain(name: str, value: float, note: str = "") -> None:
    print(f"GAIN {name} {value:.3f}" + (f"  ({note})" if note else ""), flush=True)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so load drift hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
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
    print(f"\n== session options, one step at {SIDE}² (the app: {threads()} threads, ORT_ENABLE_ALL, arena, "
          "memory pattern, spinning)")
    level = ort.GraphOptimizationLevel
    variants = {
        "app": options(),
        "threads_1": options(intra_op_num_threads=1),
        "level_extended": options(graph_optimization_level=level.ORT_ENABLE_EXTENDED),
        "level_basic": options(graph_optimization_level=level.ORT_ENABLE_BASIC),
        "no_mem_pattern": options(enable_mem_pattern=False),
        "no_arena": options(enable_cpu_mem_arena=False),
        "no_spinning": options(spinning=False),
    }
    feeds = sr3_feeds(SIDE, SIDE)
    sessions = {k: session(str(path), v) for k, v in variants.items()}
    times = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()})
    for name, seconds in times.items():
        if name != "app":
            gain(f"session_{name}", seconds / times["app"], f"{seconds:.3f} s vs {times['app']:.3f} s")
    for variant in ("app", "no_mem_pattern"):
        child = subprocess.run([sys.executable, __file__, "--session-rss", variant], capture_output=True, text=True,
                               check=True)
        rss = float(child.stdout.split()[-1])
        print(f"  peak RSS of a process running two 512² steps, {variant}: {rss:.2f} GB")
        if variant == "app":
            app_rss = rss
    gain("session_no_mem_pattern_peak_rss", rss / app_rss, "memory, two 512² runs")


def session_rss_child(variant: str) -> None:
    opts = options() if variant == "app" else options(enable_mem_pattern=False)
    sess, feeds = session(str(model_path("sr3")), opts), sr3_feeds(512, 512)
    for _ in range(2):  # the memory pattern is recorded in the first run and used from the second on
        sess.run(None, feeds)
    print(f"RSS {peak_rss_bytes() / 1e9:.3f}")


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
    print("\n== graph rewrites (proposed for exporter/export_onnx.py), one step")
    base = onnx.load(str(path))
    matmul, n_mm = einsum_to_matmul(base)
    both, n_in = instance_norm_affine(matmul)
    print(f"  {n_mm} Einsum -> Transpose + MatMul; {n_in} GroupNorm(C = groups) -> one InstanceNormalization")
    check = sr3_feeds(64, 64)
    random_base = randomised(base)  # rewrite after randomising: the folded affine must carry the new weights
    reference = session(random_base.SerializeToString()).run(None, check)[0]
    random_mm = einsum_to_matmul(random_base)[0]
    for name, model in (("matmul", random_mm), ("matmul+instancenorm", instance_norm_affine(random_mm)[0])):
        out = session(model.SerializeToString()).run(None, check)[0]
        print(f"  {name}: max |difference| on random weights {np.abs(out - reference).max():.1e} "
              f"(outputs up to {np.abs(reference).max():.1f})")
    sessions = {"app": session(str(path)), "matmul": session(matmul.SerializeToString()),
                "matmul+instancenorm": session(both.SerializeToString())}
    for side, rounds in ((SIDE, 3), (512, 1)):
        feeds = sr3_feeds(side, side)
        times = interleaved({k: (lambda s=s, f=feeds: s.run(None, f)) for k, s in sessions.items()}, rounds)
        for name in ("matmul", "matmul+instancenorm"):
            gain(f"graph_{name}_{side}", times[name] / times["app"], f"{times[name]:.3f} s vs {times['app']:.3f} s")


def batching_section(path: Path) -> None:
    print("\n== tiles per session.run (the pipeline batches up to the memory budget already)")
    app = session(str(path))
    for tile, count in ((128, 8), (256, 4)):
        singles = feeds_for([(1, 3, tile, tile)] * count)
        batched = feeds_for([(count, 3, tile, tile)])
        times = interleaved({
            "one_by_one": lambda singles=singles: [app.run(None, f) for f in singles],
            "batched": lambda batched=batched: app.run(None, batched[0]),
        }, rounds=2)
        gain(f"batch_{count}x{tile}", times["batched"] / times["one_by_one"],
             f"{count} tiles of {tile}² in one run: {times['batched']:.2f} s vs {times['one_by_one']:.2f} s")


def sampler_section(step_seconds_per_mp: float) -> None:
    side = 1024
    print(f"\n== the sampler on a {side}² output (numpy around the network)")
    rng = np.random.default_rng(0)
    shape = (3, side, side)
    y, out, lr = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    sampler = Sampler(np.array([0.2, 0.5, 0.8]), "ddim", 0.0, "v", "residual", "sqrt_gamma")
    steps = {"app": lambda: Sampler.step(sampler, out.copy(), 0, y, rng, lr),
             "lean": lambda: lean_step(sampler, out.copy(), 0, y, rng, lr)}
    copy = interleaved({"copy": lambda: out.copy()}, rounds=5)["copy"]  # both pay for the copy of `out`
    times = interleaved(steps, rounds=5)
    peaks = {}
    for name, fn in steps.items():
        tracemalloc.start()
        fn()
        peaks[name] = tracemalloc.get_traced_memory()[1] / (out.nbytes)
        tracemalloc.stop()
    network = step_seconds_per_mp * side * side / 1e6
    for name in ("app", "lean"):
        print(f"  Sampler.step {name}: {(times[name] - copy) * 1e3:.0f} ms, peak {peaks[name]:.1f} planes incl. the "
              f"network output's copy "
              f"({peaks[name] * out.nbytes / 1e6:.0f} MB); network step ~{network:.1f} s")
    gain("sampler_lean_step_time", (times["lean"] - copy) / (times["app"] - copy))
    gain("sampler_lean_step_peak_memory", peaks["lean"] / peaks["app"])
    noise = rng.standard_normal(shape, dtype=np.float32)
    app_start = Sampler.start
    with lean_start():
        lean = Sampler.start
    starts = {"app": lambda: app_start(sampler, noise, lr), "lean": lambda: lean(sampler, noise, lr)}
    start_times = interleaved(starts, rounds=3)
    for name, fn in starts.items():
        tracemalloc.start()
        fn()
        peaks[name] = tracemalloc.get_traced_memory()[1] / out.nbytes
        tracemalloc.stop()
    gain("sampler_float32_start_peak_memory", peaks["lean"] / peaks["app"],
         f"{start_times['app'] * 1e3:.0f} -> {start_times['lean'] * 1e3:.0f} ms")
    previews = interleaved({"two": lambda: (from_model(y + lr), from_model(out + lr))}, rounds=3)["two"]
    print(f"  two preview images per step (y_t and pred_y0 as HWC [0, 1]): {previews * 1e3:.0f} ms "
          f"= {previews / network:.1%} of a network step; the CLI discards both")
    gain("previews_share_of_step", previews / network, "built per step whether shown or not")


def fp16_section(path: Path) -> None:
    print(f"\n== fp16 model (exporter --fp16, for GPUs) on this CPU, one step at {SIDE}²")
    fp16 = model_path("sr3", fp16=True)
    feeds = sr3_feeds(SIDE, SIDE)
    sessions = {"fp32": session(str(path)), "fp16": session(str(fp16))}
    times = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, rounds=2)
    size = fp16.stat().st_size / path.stat().st_size
    gain("fp16_on_cpu", times["fp16"] / times["fp32"], f"file {size:.2f} x; x86 CPUs lack fp16 kernels: GPU only")


def overlap_section(path: Path) -> None:
    print("\n== tile overlap: compute per output megapixel (counted, not timed; 512 px tiles, multiple 8)")
    cache: dict[tuple[int, int], float] = {}

    def gmac(h: int, w: int) -> float:
        if (h, w) not in cache:
            cache[(h, w)] = sum(count_macs(path, sr3_sizes(h, w)).values()) / 1e9
        return cache[(h, w)]

    base = gmac(512, 512) / (512 * 512 / 1e6)
    for margin in (16, 8, 4):
        per_mp = []
        for side in (1024, 2048):
            grid = plan_tiles(side, side, 512, 8, margin)
            per_mp.append(len(grid) * gmac(grid.tile_height, grid.tile_width) / (side * side / 1e6))
        worst = max(*per_mp, base) / min(*per_mp, base)
        note = "today's automatic margin" if margin == 16 else "proposed" if margin == 8 else ""
        print(f"  margin {margin:2d} px: 1024² {per_mp[0]:.0f}, 2048² {per_mp[1]:.0f} GMAC/MP vs 512² {base:.0f}; "
              f"max/min {worst:.3f} {note}")
        gain(f"tile_margin_{margin}_compute_spread", worst)


def memory_section() -> None:
    print("\n== peak RSS of a 4x upscale of 1024² (bench_scale.py child; each change on top of the previous)")
    script = Path(__file__).resolve().parent / "bench_scale.py"
    steps = ["", "no_mem_pattern", "no_mem_pattern,lean_sampler", "no_mem_pattern,lean_sampler,no_previews"]
    peaks = []
    for protos in steps:
        child = subprocess.run([sys.executable, str(script), "--rss-child", "--prototypes", protos],
                               capture_output=True, text=True, check=True)
        line = next(li for li in child.stdout.splitlines() if li.startswith("CHILD "))
        peaks.append(int(line.split()[2]) / 1e9)
        print(f"  {protos or 'the app as it is':45s} {peaks[-1]:.2f} GB", flush=True)
    for i in range(1, len(steps)):
        gain(f"rss_4096_{steps[i].split(',')[-1]}", peaks[i] / peaks[i - 1], f"{peaks[i - 1]:.2f} -> {peaks[i]:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="add the peak-RSS breakdown (about 2 minutes)")
    parser.add_argument("--session-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.session_rss:
        session_rss_child(args.session_rss)
        return
    path = model_path("sr3")
    print(f"model {path.name}, {threads()} threads, {machine()}", flush=True)
    app = session(str(path))
    feeds = sr3_feeds(SIDE, SIDE)
    step = interleaved({"step": lambda: app.run(None, feeds)}, rounds=2)["step"]
    session_options_section(path)
    graph_section(path)
    batching_section(path)
    sampler_section(step / (SIDE * SIDE / 1e6))
    fp16_section(path)
    overlap_section(path)
    if args.memory:
        memory_section()
    print(f"\nIO binding on CUDA: not measurable here ({', '.join(ort.get_available_providers())} built in, "
          f"no GPU); see tests/core/test_cuda_iobinding.py")


if __name__ == "__main__":
    main()
