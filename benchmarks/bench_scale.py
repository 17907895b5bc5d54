"""Figure 4: linear cost at scale: time per output megapixel from 512² to 4096².

Time per output MP at 512², 1024², 2048² and 4096² outputs: the ``fast`` preset cut to ONE step
(``steps=1``, back-projection as the preset says) with the regression model the app loads with the SR3
model (``_common.sr3_models``: the one a conditioned card refines, or the one the preset starts from;
its one pass counts as network time), automatic tiling, via ``pipeline.refine``. A 4096² step takes
minutes here and the load drifts meanwhile, so each size's time per MP is expressed in units of the
512² cost, from factors that are each measured drift-free: (wall / time inside session.run, same run)
x (one bare run of each of the size's tile batches / one bare 512² SR3 run, timed alternately) / output
MP. Raw seconds are printed too. Target: max / min <= 1.15. The tile margin (``tiling.MAX_MARGIN``)
sets the overlap: ``--margin 16`` measures the old one for comparison.
Quick mode (``--quick`` / BENCH_QUICK=1): 128² and 256² outputs against a 128² reference, one round.

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
    by_mode,
    feeds_for,
    machine,
    recorded_runs,
    result,
    sr3_feeds,
    sr3_models,
    test_lr,
    threads,
)
from graph_macs import count_macs, sr3_sizes

from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale import tiling
from sr3_desktop.core.upscale.pipeline import refine
from sr3_desktop.core.upscale.refine_types import RefineOptions

OUTPUT_SIDES = by_mode((512, 1024, 2048, 4096), (128, 256))
REFERENCE_SIDE = OUTPUT_SIDES[0]
"""Each size's cost per MP is in units of this size's (512², quick 128²): one bare SR3 run of it."""
REFERENCE_MP = REFERENCE_SIDE * REFERENCE_SIDE / 1e6
ROUNDS = by_mode(3, 1)
ONE_STEP = RefineOptions(method="sr3", preset="fast", steps=1, seed=0)
_COSTS: dict[tuple[str, tuple[int, ...]], float] = {}


def relative_cost(model: OnnxDenoiser, shape: tuple[int, ...], reference_session: object,
                  reference: dict[str, np.ndarray]) -> float:
    """Seconds of one bare run of ``shape`` on ``model`` / seconds of one bare reference SR3 run, timed
    alternately, median of ROUNDS."""
    key = (model.card.kind, shape)
    if key == ("sr3", (1, 3, REFERENCE_SIDE, REFERENCE_SIDE)):
        return 1.0
    if key not in _COSTS:
        feeds = feeds_for([shape])[0]
        if model.card.kind == "regression":
            feeds = {model.card.inputs[0]: feeds["lr_up"]}
        ratios = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            model._session.run(None, feeds)
            middle = time.perf_counter()
            reference_session.run(None, reference)  # type: ignore[attr-defined]
            ratios.append((middle - start) / (time.perf_counter() - middle))
        _COSTS[key] = statistics.median(ratios)
    return _COSTS[key]


def refine_once(sr3: OnnxDenoiser, regression: OnnxDenoiser | None, side_in: int) -> float:
    """Wall seconds of one ONE_STEP refine of a ``side_in``² input."""
    lr = test_lr(side_in)
    start = time.perf_counter()
    final = None
    for step in refine(lr, ONE_STEP, sr3, regression):
        final = step.result or final
    assert final is not None and final.size == (4 * side_in, 4 * side_in)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", type=int, help=f"tile margin to measure (default: the app's, {tiling.MAX_MARGIN})")
    parser.add_argument("--sides", type=int, nargs="+", default=list(OUTPUT_SIDES),
                        help=f"output sides to time (in units of the {REFERENCE_SIDE}² cost)")
    args = parser.parse_args()
    if args.margin is not None:
        tiling.MAX_MARGIN = args.margin
    sr3, regression = sr3_models(ONE_STEP)
    models = [sr3, *([regression] if regression else [])]
    print(f"model {sr3.path.name}" + (f" with {regression.path.name}" if regression else "") + ", fast preset cut to "
          f"1 step, margin {tiling.MAX_MARGIN} px, {threads()} threads, {machine()}", flush=True)
    session = sr3._session
    reference = sr3_feeds(REFERENCE_SIDE, REFERENCE_SIDE)
    session.run(None, reference)  # warm-up
    per_mp, raw, gmac = {}, {}, {}
    ref = f"{REFERENCE_SIDE}²"
    for side in args.sides:
        timed = [TimedSession(m._session) for m in models]
        for model, proxy in zip(models, timed, strict=True):
            model._session = proxy  # type: ignore[assignment]
        seconds = 0.0
        try:
            def run(side: int = side) -> None:
                nonlocal seconds
                seconds = refine_once(sr3, regression, side // 4)
            shapes = recorded_runs(models, run)
        finally:
            for model, proxy in zip(models, timed, strict=True):
                model._session = proxy.session  # type: ignore[assignment]
        inside = sum(proxy.seconds for proxy in timed)
        mp = side * side / 1e6
        raw[side] = seconds / mp
        cost = sum(relative_cost(m, shape, session, reference)  # in bare reference SR3 runs
                   for m, runs in zip(models, shapes, strict=True) for shape in runs)
        per_mp[side] = seconds / inside * cost / (mp / REFERENCE_MP)
        gmac[side] = sum(sum(count_macs(m.path, sr3_sizes(s[2], s[3], s[0])).values())
                         for m, runs in zip(models, shapes, strict=True) for s in runs) / 1e9 / mp
        batches = "; ".join(f"{m.card.kind} {len(runs)} run(s) of {runs[0][0]}x{runs[0][3]}²"
                            for m, runs in zip(models, shapes, strict=True))
        print(f"  {side}² output: {seconds:6.1f} s ({raw[side]:5.1f} s/MP raw), {batches}, our code "
              f"{seconds / inside:.3f}x session.run, the step = {cost:.2f} bare {ref} SR3 runs -> "
              f"{per_mp[side]:.3f} x the {ref} cost per MP; {gmac[side]:.0f} GMAC/MP", flush=True)
    spread = max(per_mp.values()) / min(per_mp.values())
    print(f"  raw max/min (drifts with the load): {max(raw.values()) / min(raw.values()):.3f}; "
          f"compute (GMAC per output MP) max/min: {max(gmac.values()) / min(gmac.values()):.3f}")
    print(result("scale_time_per_mp_max_over_min", spread, "<=", 1.15))


if __name__ == "__main__":
    main()
