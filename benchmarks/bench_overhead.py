"""Figure 2: the overhead of our own code around the network.

  * CLI: ``refine`` consumed exactly as ``sr3_desktop.cli`` does (its RefineOptions, preview_every=1),
    with the automatic tiling and with 128 px tiles (9 tiles per batch: stacking and blending), and
    the whole ``upscale`` command in-process (PNG load + save included).
  * GUI: the real ``qt.worker.RefineWorker`` in its QThread (offscreen Qt), live preview on, and every
    preview turned into a pixmap on the GUI thread the way ``views.canvas.Layer`` does when painted.
Ratio = wall time / time inside ``session.run`` during that same run (the app's own cached sessions,
SR3 and, when the preset starts from its estimate, regression, timed through a thin proxy): load
drift on a shared machine hits numerator and denominator alike.
As a cross-check, steps x bare ``session.run`` on the recorded tile batches is timed too.
Targets: CLI <= 1.10, GUI <= 1.15. The regression model is the one the app loads with the SR3 model
(``_common.sr3_models``: the model it is conditioned on, or the one the preset starts from).
Each run goes once first as a warm-up, printed and not counted: what a machine or a process pays once
(the model's safety verdict, the speed calibration, Qt's start) is not overhead per image; the whole
command's start-up, imports included, is ``bench_vs_realesrgan``'s command figure.
Quick mode (``--quick`` / BENCH_QUICK=1): 32² -> 128², 64 px tiles, one round.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _common import (
    TimedSession,
    by_mode,
    feeds_for,
    machine,
    recorded_batches,
    result,
    sr3_models,
    test_lr,
    threads,
)

from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import refine
from sr3_desktop.core.upscale.refine_types import RefineOptions

LR_SIDE = by_mode(64, 32)  # -> 256^2 (quick: 128^2) output
TILE = by_mode(128, 64)
"""The tile side of the tiled CLI run (several tiles per batch: stacking and blending)."""
PRESET = "fast"
ROUNDS = by_mode(2, 1)
GUI_LIMIT_S = 300
"""A GUI run that takes longer than this has hung: fail instead of waiting."""


def cli_refine(denoiser: OnnxDenoiser, regression: OnnxDenoiser | None, lr: np.ndarray, tile: int | None) -> None:
    """refine() with the CLI's options and models, consumed step by step as batch.refine_image does for the CLI."""
    options = RefineOptions(method="sr3", preset=PRESET, seed=0, tile=tile, preview_every=1)
    final = None
    steps = refine(lr, options, denoiser, regression)
    try:
        for step in steps:
            final = step.result or final
    finally:
        steps.close()
    nfe = denoiser.card.preset(PRESET).steps + (regression is not None)  # + the regression estimate's run
    assert final is not None and final.steps == nfe, (final and final.steps, nfe)


def cli_command(path: Path, image: Path, out: Path) -> None:
    from sr3_desktop import cli

    code = cli.main(["upscale", str(image), "-o", str(out), "--model", str(path), "--preset", PRESET,
                     "--device", "cpu", "--quiet", "--overwrite"], out=io.StringIO(), err=io.StringIO())
    assert code == 0, f"the CLI failed with exit code {code}"


def gui_worker(path: Path, regression: Path | None, lr: np.ndarray) -> int:
    """The real RefineWorker in a QThread; each preview becomes a QPixmap on the GUI thread."""
    from PySide6.QtCore import QEventLoop, QObject, QTimer, Slot
    from PySide6.QtWidgets import QApplication

    from sr3_desktop.qt.abortable_worker import RunSessions, start_in_thread
    from sr3_desktop.qt.refine_worker import RefineJob, RefineWorker
    from sr3_desktop.qt.views.image_panes import Layer

    class Sink(QObject):
        """Lives on the GUI thread, so the worker's signals arrive queued, as in the controller."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = Layer()
            self.shown = 0
            self.failures: list[str] = []

        @Slot(int, object)
        def preview(self, _generation: int, step: object) -> None:
            self.layer.set(step.pred_y0)  # type: ignore[attr-defined]  # the default preview kind
            assert self.layer.pixmap() is not None  # what the pane's paint event does with a new frame
            self.shown += 1

        @Slot(int, str, object)
        def result(self, _generation: int, _method: str, res: object) -> None:
            self.layer.set(res.image)  # type: ignore[attr-defined]
            self.layer.pixmap()

        @Slot(int, str)
        def failed(self, _generation: int, message: str) -> None:
            self.failures.append(message)

    app = QApplication.instance() or QApplication([])
    assert app is not None
    options = RefineOptions(method="sr3", preset=PRESET, seed=0, preview_every=1)
    job = RefineJob(1, lr, options, RunSessions(path, regression, "cpu"), ("sr3",), preview_every=1)
    worker = RefineWorker(job)
    sink = Sink()
    loop = QEventLoop()
    worker.preview.connect(sink.preview)
    worker.result.connect(sink.result)
    worker.failed.connect(sink.failed)
    thread = start_in_thread(worker, "bench-refine")
    # The loop ends when the *thread* has finished, not when the worker has: worker.finished also
    # queues thread.quit to this thread, and quitting on worker.finished could leave that call
    # undelivered, so thread.wait() would block for ever (the hang of issue 14). thread.finished is
    # emitted only after the thread's event loop has returned, whatever order queued calls arrive in.
    thread.finished.connect(loop.quit)  # queued here: a quit posted before exec() still ends exec()
    deadline = QTimer(singleShot=True, interval=GUI_LIMIT_S * 1000)
    deadline.timeout.connect(loop.quit)
    deadline.start()
    if not thread.isFinished():  # true from the moment finished is emitted, so no emission is missed
        loop.exec()
    deadline.stop()
    if not thread.wait(10_000):  # only after the deadline: stop the run, then fail
        worker.abort()
        thread.quit()
        thread.wait(30_000)
        raise RuntimeError(f"the GUI worker's thread did not finish within {GUI_LIMIT_S} s")
    if sink.failures:
        raise RuntimeError(sink.failures[0])
    return sink.shown


def in_run_ratio(denoisers: list[OnnxDenoiser], run: Callable[[], object]) -> tuple[float, float, float]:
    """(wall / session time, wall s, session s) of one ``run()``; every given model's session is timed."""
    timed = [TimedSession(d._session) for d in denoisers]
    for denoiser, proxy in zip(denoisers, timed, strict=True):
        denoiser._session = proxy  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    finally:
        for denoiser, proxy in zip(denoisers, timed, strict=True):
            denoiser._session = proxy.session  # type: ignore[assignment]
    inside = sum(proxy.seconds for proxy in timed)
    return wall / inside, wall, inside


def bare_steps(denoiser: OnnxDenoiser, feeds: list[dict[str, np.ndarray]], steps: int) -> float:
    session = denoiser._session
    start = time.perf_counter()
    for _ in range(steps):
        for feed in feeds:
            session.run(None, feed)
    return time.perf_counter() - start


def main() -> None:
    # the cached sessions the CLI and the worker get too, with the regression model they load alongside
    denoiser, regression = sr3_models(RefineOptions(method="sr3", preset=PRESET))
    path = denoiser.path
    regression_path = regression.path if regression else None
    lr = test_lr(LR_SIDE)
    steps = denoiser.card.preset(PRESET).steps
    models = [denoiser, *([regression] if regression else [])]
    print(f"model {path.name}, preset {PRESET} ({steps} steps), {LR_SIDE}² -> {LR_SIDE * denoiser.card.scale}², "
          f"{threads()} threads, {machine()}", flush=True)
    one_step = RefineOptions(method="sr3", preset=PRESET, steps=1, seed=0)
    shapes = recorded_batches(denoiser, lambda: list(refine(lr, one_step, denoiser, regression)))  # also a warm-up
    print(f"  tile batches per step: {shapes}")
    ratios: dict[str, list[float]] = {"cli": [], "tiled": [], "command": [], "gui": []}
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        image = Path(tmp) / "in.png"
        Image.fromarray((lr * 255 + 0.5).astype(np.uint8)).save(image)
        runs: dict[str, Callable[[], object]] = {
            "cli": lambda: cli_refine(denoiser, regression, lr, None),
            "tiled": lambda: cli_refine(denoiser, regression, lr, TILE),
            "command": lambda: cli_command(path, image, Path(tmp) / "out.png"),
            "gui": lambda: gui_worker(path, regression_path, lr),
        }
        for name, run in runs.items():  # once-per-machine or once-per-process costs, shown, not counted
            ratio, wall, inside = in_run_ratio(models, run)
            print(f"  first   {name:8s}: wall {wall:6.2f} s, in session.run {inside:6.2f} s, ratio {ratio:.3f} "
                  "(warm-up: the safety verdict, the speed calibration, Qt's start; not counted)", flush=True)
        for r in range(ROUNDS):
            for name, run in runs.items():
                ratio, wall, inside = in_run_ratio(models, run)
                ratios[name].append(ratio)
                print(f"  round {r + 1} {name:8s}: wall {wall:6.2f} s, in session.run {inside:6.2f} s, "
                      f"ratio {ratio:.3f}", flush=True)
        bare = bare_steps(denoiser, feeds_for(shapes), steps)
        ratio, wall, _ = in_run_ratio(models, runs["cli"])
        also = "; the wall time has the regression run too" if regression else ""
        print(f"  cross-check: cli refine {wall:.2f} s / ({steps} x bare session.run = {bare:.2f} s) "
              f"= {wall / bare:.3f} (drifts with the load{also})")
    med = {k: statistics.median(v) for k, v in ratios.items()}
    print(result("overhead_cli_refine", med["cli"], "<=", 1.10))
    print(result(f"overhead_cli_refine_tiled{TILE}", med["tiled"], "<=", 1.10))
    print(result("overhead_cli_command_with_png_io", med["command"], "<=", 1.10))
    print(result("overhead_gui_worker_preview", med["gui"], "<=", 1.15))


if __name__ == "__main__":
    main()
