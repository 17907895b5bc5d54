"""Reliability of the app: the UI stays responsive during a run; runs and cancels leak nothing."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, QTimer
from qt_helpers import write_image
from test_window import load

from sr3_desktop.core.upscale.refine_types import RefineResult, RefineStep
from sr3_desktop.qt.refine_worker import RefineWorker


def rss_bytes() -> int:
    """Resident memory now (Linux /proc); elsewhere the peak, which must stay flat just the same.

    Freed heap pages go back to the system first (glibc's malloc_trim), so that fragmentation left by the
    earlier tests of the suite is not read as growth; memory still referenced stays resident and counts."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def os_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def test_event_loop_latency_stays_under_100_ms_during_a_run(window: Any, qtbot: Any, tmp_path: Path) -> None:
    load(window, qtbot, write_image(tmp_path / "big.png", (64, 48), seed=4))
    panel = window.settings_panel
    panel.preset.setCurrentIndex(panel.preset.findData("custom"))
    panel.steps.setValue(400)  # long enough to measure (120 steps took 0.24 s once the blend got cheaper)
    window.compare.show_all_panes()  # the busiest view: four panes repaint
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    started = time.perf_counter()
    with qtbot.waitSignal(window.controller.run_finished, timeout=120_000):
        window.run_action.trigger()
    timer.stop()
    elapsed = time.perf_counter() - started
    assert window.controller.model.results["sr3"].image.shape == (192, 256, 3)
    assert window.controller.model.results["sr3"].steps >= 400  # + the regression start of the preset
    assert elapsed > 0.3 and len(gaps) > 20, "the run was too short to measure responsiveness"
    print(f"run {elapsed:.2f} s, {len(gaps)} ticks, longest gap {max(gaps) * 1000:.1f} ms")
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


def test_twenty_runs_with_cancels_leak_no_threads_and_no_memory(window: Any, qtbot: Any, tmp_path: Path) -> None:
    load(window, qtbot, write_image(tmp_path / "soak.png", (48, 32), seed=6))
    panel = window.settings_panel
    panel.preset.setCurrentIndex(panel.preset.findData("custom"))
    c = window.controller

    def cycle() -> None:  # run, cancel, run
        panel.steps.setValue(1000)  # long enough that the cancel always lands mid-run
        with qtbot.waitSignal(c.preview_shown, timeout=30_000):
            window.run_action.trigger()
        with qtbot.waitSignal(c.run_finished, timeout=30_000) as cancelled:
            window.cancel_action.trigger()
        assert cancelled.args == [True]
        panel.steps.setValue(30)
        with qtbot.waitSignal(c.run_finished, timeout=30_000) as finished:
            window.run_action.trigger()
        assert finished.args == [False] and c.model.results["sr3"].image.shape == (128, 192, 3)
        qtbot.waitUntil(lambda: c.slot.thread_count() == 0 and c.tasks.pending == 0, timeout=10_000)

    def alive(kind: type) -> int:
        return sum(1 for o in gc.get_objects() if type(o) is kind)

    for _ in range(3):  # warm up: sessions, pool threads, allocator
        cycle()
    gc.collect()
    threads, os_threads, rss = threading.active_count(), os_thread_count(), rss_bytes()
    held = {kind: alive(kind) for kind in (RefineResult, RefineStep)}
    for _ in range(20):
        cycle()
    gc.collect()
    assert threading.active_count() == threads
    assert os_thread_count() <= os_threads, "worker threads were left behind"
    workers = [o for o in gc.get_objects() if type(o) in (RefineWorker, QThread)]
    assert workers == [], f"{len(workers)} worker objects survived their runs"
    # One leaked result (or a step holding its planes) per run is one more live object after 20 runs:
    # an exact count, where RSS (noise ~10 MiB) cannot see 20 results of 288 KiB.
    assert {kind: alive(kind) for kind in held} == held, "results or steps of finished runs are still referenced"
    growth = rss_bytes() - rss
    print(f"threads {threads} -> {threading.active_count()}, os threads {os_threads} -> {os_thread_count()}, "
          f"rss growth {growth / 1024**2:.1f} MiB")
    assert growth < 24 * 1024**2, f"memory grew by {growth / 1024**2:.1f} MiB over 20 runs"
