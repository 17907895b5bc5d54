"""Figure 4: linear cost and memory at scale.

Time per output megapixel at 512², 1024² and 2048² outputs: the ``fast`` preset cut to ONE step
(``steps=1``, no regression model: a bicubic start, one step, back-projection), automatic tiling, via
``pipeline.refine``. A 2048² step takes a minute here and the load drifts meanwhile, so each size's
time per MP is expressed in units of the 512² cost, from factors that are each measured drift-free:
(wall / time inside session.run, same run) x (one bare run of the size's tile batch / one bare 512²
run, timed alternately) x tile batches per step / output MP. Raw seconds are printed too.
Target: max / min <= 1.15.

Peak RSS of a 4x upscale of a 1024x1024 input (4096² output) is measured in a child process
(its VmHWM, see ``_common.peak_rss_bytes``; ru_maxrss where there is no /proc), running the same preset cut to TWO
steps (one preview step, one final step; previews are lazy and never read here, as in the CLI).
The first two tile batches run for real; later batches of an already-seen shape return a copy of
the last real output, because 81 tiles x 2 steps would take ~10 minutes here: onnxruntime's
arena holds what one tile needs after its first run, so memory is the same, only the wall time
is not (``--full`` runs every tile for real).
Target: <= 3 GB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _common import (
    TimedSession,
    feeds_for,
    machine,
    model_path,
    peak_rss_bytes,
    recorded_batches,
    result,
    sr3_feeds,
    test_lr,
    threads,
)
from graph_macs import count_macs, sr3_sizes

from sr3_desktop.core.denoiser import get_denoiser
from sr3_desktop.core.pipeline import RefineOptions, refine

OUTPUT_SIDES = (512, 1024, 2048)
RSS_INPUT = 1024
REAL_RUNS = 2


class ReplaySession(TimedSession):
    """Runs the first ``real_runs`` batches of each shape for real, then returns copies of the last output."""

    def __init__(self, session: object, real_runs: int) -> None:
        super().__init__(session)
        self.real_runs = real_runs
        self.seen: dict[tuple[int, ...], list[np.ndarray]] = {}
        self.count: dict[tuple[int, ...], int] = {}

    def run(self, output_names: object, feeds: dict[str, np.ndarray], *rest: object) -> object:
        shape = tuple(feeds["y_t"].shape)
        self.count[shape] = self.count.get(shape, 0) + 1
        if self.count[shape] <= self.real_runs or shape not in self.seen:
            self.seen[shape] = super().run(output_names, feeds, *rest)  # type: ignore[assignment]
            return self.seen[shape]
        return [a.copy() for a in self.seen[shape]]


REFERENCE_MP = 512 * 512 / 1e6
_COSTS: dict[tuple[int, ...], float] = {}


def relative_cost(session: object, shape: tuple[int, ...], reference: dict[str, np.ndarray], rounds: int = 3) -> float:
    """Seconds of one bare run of ``shape`` / seconds of one bare 512² run, timed alternately, median."""
    if shape == (1, 3, 512, 512):
        return 1.0
    if shape not in _COSTS:
        feeds = feeds_for([shape])[0]
        ratios = []
        for _ in range(rounds):
            start = time.perf_counter()
            session.run(None, feeds)  # type: ignore[attr-defined]
            middle = time.perf_counter()
            session.run(None, reference)  # type: ignore[attr-defined]
            ratios.append((middle - start) / (time.perf_counter() - middle))
        _COSTS[shape] = statistics.median(ratios)
    return _COSTS[shape]


def refine_once(side_in: int, steps: int, preview_every: int = 1) -> tuple[float, int]:
    sr3 = get_denoiser(model_path("sr3"), "cpu")
    lr = test_lr(side_in)
    start = time.perf_counter()
    final = None
    options = RefineOptions(method="sr3", preset="fast", steps=steps, seed=0, preview_every=preview_every)
    for step in refine(lr, options, sr3, None):
        final = step.result or final
    assert final is not None and final.image.shape[:2] == (4 * side_in, 4 * side_in)
    refine_once.last_seconds = time.perf_counter() - start  # type: ignore[attr-defined]
    return refine_once.last_seconds, final.steps  # type: ignore[attr-defined]


def rss_child(full: bool) -> None:
    """One 4x upscale of a 1024² input; its previews are never read, so never built (lazy previews)."""
    sr3 = get_denoiser(model_path("sr3"), "cpu")
    replay = None if full else ReplaySession(sr3._session, REAL_RUNS)
    if replay is not None:
        sr3._session = replay  # type: ignore[assignment]
    seconds, _ = refine_once(RSS_INPUT, 2)
    runs = sum(replay.count.values()) if replay else 0
    print(f"CHILD peak_rss_bytes {peak_rss_bytes()} seconds {seconds:.1f} batches {runs}")


def peak_rss(full: bool) -> tuple[float, str]:
    """(peak RSS in GB, a description) of a child process running ``rss_child``."""
    command = [sys.executable, __file__, "--rss-child", *(["--full"] if full else [])]
    child = subprocess.run(command, capture_output=True, text=True, check=True)
    fields = next(li for li in child.stdout.splitlines() if li.startswith("CHILD ")).split()
    how = "all real" if full else f"first {REAL_RUNS} real per shape, then replayed"
    return int(fields[2]) / 1e9, f"{fields[4]} s, {fields[6]} tile batches ({how})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help="run every tile for real in the memory test")
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.full)
        return
    path = model_path("sr3")
    sr3 = get_denoiser(path, "cpu")
    print(f"model {path.name}, fast preset cut to 1 step, {threads()} threads, {machine()}", flush=True)
    session = sr3._session
    reference = sr3_feeds(512, 512)
    session.run(None, reference)  # warm-up
    per_mp, raw, gmac = {}, {}, {}
    for side in OUTPUT_SIDES:
        timed = TimedSession(session)
        sr3._session = timed  # type: ignore[assignment]
        try:
            shapes = recorded_batches(sr3, lambda side=side: refine_once(side // 4, 1))
        finally:
            sr3._session = session  # type: ignore[assignment]
        seconds = refine_once.last_seconds  # type: ignore[attr-defined]
        mp = side * side / 1e6
        raw[side] = seconds / mp
        cost = sum(relative_cost(session, shape, reference) for shape in shapes)  # in bare 512² runs
        per_mp[side] = seconds / timed.seconds * cost / (mp / REFERENCE_MP)
        gmac[side] = sum(sum(count_macs(path, sr3_sizes(s[2], s[3], s[0])).values()) for s in shapes) / 1e9 / mp
        print(f"  {side}² output: {seconds:6.1f} s ({raw[side]:5.1f} s/MP raw), {len(shapes)} run(s) of "
              f"{shapes[0][0]}x{shapes[0][3]}², our code {seconds / timed.seconds:.3f}x session.run, one step = "
              f"{cost:.2f} bare 512² runs -> {per_mp[side]:.3f} x the 512² cost per MP; {gmac[side]:.0f} GMAC/MP",
              flush=True)
    spread = max(per_mp.values()) / min(per_mp.values())
    print(f"  raw max/min (drifts with the load): {max(raw.values()) / min(raw.values()):.3f}; "
          f"compute (GMAC per output MP) max/min: {max(gmac.values()) / min(gmac.values()):.3f}")
    peak_gb, how = peak_rss(args.full)
    print(f"  4096² output (1024² input), 2 steps: peak RSS {peak_gb:.2f} GB, {how}", flush=True)
    print(result("scale_time_per_mp_max_over_min", spread, "<=", 1.15))
    print(result("scale_peak_rss_gb_4096", peak_gb, "<=", 3.0, 2))


if __name__ == "__main__":
    main()
