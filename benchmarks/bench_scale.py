"""Figure 4: linear cost at scale: time per output megapixel from 512² to 4096².

Time per output MP at 512², 1024², 2048² and 4096² outputs: the ``fast`` preset cut to ONE step
(``steps=1``, no regression model: a bicubic start, one step, back-projection), automatic tiling, via
``pipeline.refine``. A 4096² step takes minutes here and the load drifts meanwhile, so each size's
time per MP is expressed in units of the 512² cost, from factors that are each measured drift-free:
(wall / time inside session.run, same run) x (one bare run of the size's tile batch / one bare 512²
run, timed alternately) x tile batches per step / output MP. Raw seconds are printed too.
Target: max / min <= 1.15. The tile margin (``tiling.MAX_MARGIN``) sets the overlap: ``--margin 16``
measures the old one for comparison.

Memory (peak RSS against output size) is ``bench_memory.py``.
"""

from __future__ import annotations

import argparse
import statistics
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
    recorded_batches,
    result,
    sr3_feeds,
    test_lr,
    threads,
)
from graph_macs import count_macs, sr3_sizes

from sr3_desktop.core.model_files.denoiser import get_denoiser
from sr3_desktop.core.upscale import tiling
from sr3_desktop.core.upscale.pipeline import refine
from sr3_desktop.core.upscale.refine_types import RefineOptions

OUTPUT_SIDES = (512, 1024, 2048, 4096)
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
    assert final is not None and final.size == (4 * side_in, 4 * side_in)
    refine_once.last_seconds = time.perf_counter() - start  # type: ignore[attr-defined]
    return refine_once.last_seconds, final.steps  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", type=int, help=f"tile margin to measure (default: the app's, {tiling.MAX_MARGIN})")
    parser.add_argument("--sides", type=int, nargs="+", default=list(OUTPUT_SIDES), help="output sides to time")
    args = parser.parse_args()
    if args.margin is not None:
        tiling.MAX_MARGIN = args.margin
    path = model_path("sr3")
    sr3 = get_denoiser(path, "cpu")
    print(f"model {path.name}, fast preset cut to 1 step, margin {tiling.MAX_MARGIN} px, {threads()} threads, "
          f"{machine()}", flush=True)
    session = sr3._session
    reference = sr3_feeds(512, 512)
    session.run(None, reference)  # warm-up
    per_mp, raw, gmac = {}, {}, {}
    for side in args.sides:
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
    print(result("scale_time_per_mp_max_over_min", spread, "<=", 1.15))


if __name__ == "__main__":
    main()
