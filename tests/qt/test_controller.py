"""The controller against a mocked view (MagicMock(spec=View)), with real workers and the real core."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import numpy as np
from qt_helpers import write_image

from sr3_desktop.core.upscale.refine_types import RefineResult
from sr3_desktop.qt.controllers.app_controller import Controller
from sr3_desktop.qt.views.protocol import View


def called_methods(view: MagicMock, name: str) -> list[tuple[Any, ...]]:
    return [c.args for c in getattr(view, name).call_args_list]


def test_models_are_listed_and_the_sr3_card_fills_the_presets(controller: Controller) -> None:
    entries, sr3, regression = controller.view.show_models.call_args.args  # type: ignore[attr-defined]
    assert {e.name for e in entries} == {"qt-test-sr3", "qt-test-regression"}
    assert (sr3, regression) == ("qt-test-sr3", "qt-test-regression")
    card, preset = controller.view.show_presets.call_args.args  # type: ignore[attr-defined]
    assert card.name == "qt-test-sr3" and preset == "fast"


def test_load_and_run_reports_previews_results_and_metrics(controller: Controller, qtbot: Any,
                                                           sample_image: Path) -> None:
    view: MagicMock = controller.view  # type: ignore[assignment]
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    image, name, scale = view.show_image.call_args.args
    assert (name, scale, image.size) == ("sample.png", 4, (24, 16))
    controller.model.settings.preset = "quality"  # 20 steps: several previews
    with qtbot.waitSignal(controller.run_finished, timeout=30_000) as finished:
        controller.run()
    assert finished.args == [False]
    assert [args[0] for args in called_methods(view, "show_result")] == ["bicubic", "regression", "sr3"]
    previews = called_methods(view, "show_preview")
    assert len(previews) >= 2 and previews[-1][1] < previews[-1][2]  # (image, step, total, kind)
    assert previews[0][0].shape == (64, 96, 3)
    engine = view.show_engine.call_args.args
    assert engine[0] and engine[0][0].endswith("ExecutionProvider")
    qtbot.waitUntil(lambda: set(controller.model.metrics) == {"bicubic", "regression", "sr3"}, timeout=10_000)
    assert all(row.consistency is not None and row.psnr is None for row in controller.model.metrics.values())


def test_stale_results_of_an_older_generation_are_dropped(controller: Controller, qtbot: Any,
                                                          sample_image: Path) -> None:
    view: MagicMock = controller.view  # type: ignore[assignment]
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    old = controller.model.generation - 1
    view.reset_mock()
    image = np.zeros((64, 96, 3), np.float32)
    controller.runs._result(old, "sr3", RefineResult(image, None, "sr3", "fast", 4, 0.1))
    controller.runs._progress(old, 1, 4)
    controller.runs._failed(old, "late failure")
    view.show_result.assert_not_called()
    view.show_progress.assert_not_called()
    view.show_error.assert_not_called()
    assert "sr3" not in controller.model.results


def test_loading_a_new_image_while_running_abandons_the_run(controller: Controller, qtbot: Any,
                                                            sample_image: Path, tmp_path: Path) -> None:
    other = write_image(tmp_path / "other.png", (20, 12), seed=5)
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    controller.model.settings.preset = "quality"
    controller.run()
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(other)])
    assert not controller.slot.busy and controller.model.image is not None and controller.model.image.size == (20, 12)
    qtbot.waitUntil(lambda: controller.slot.thread_count() == 0, timeout=10_000)
    assert controller.model.results == {}  # nothing from the abandoned run arrived


def test_unlocked_seed_draws_a_new_seed_for_every_run(controller: Controller, qtbot: Any,
                                                     sample_image: Path) -> None:
    controller.model.settings.seed_locked = False
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    seeds = []
    for _ in range(2):
        with qtbot.waitSignal(controller.run_finished, timeout=30_000):
            controller.run()
        seeds.append(controller.view.show_seed.call_args.args[0])  # type: ignore[attr-defined]
    assert seeds[0] != seeds[1]
    assert controller.model.settings.seed == seeds[1]


def test_a_corrupt_file_reports_an_error(controller: Controller, qtbot: Any, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with qtbot.waitSignal(controller.error_shown, timeout=5000) as error:
        controller.open_paths([str(bad)])
    title, message = controller.view.show_error.call_args.args  # type: ignore[attr-defined]
    assert title == "Cannot open image" and "broken.png" in message and message == error.args[0]
    controller.view.show_empty.assert_called()  # type: ignore[attr-defined]


def test_run_without_an_image_only_explains(controller: Controller) -> None:
    controller.run()
    assert not controller.slot.busy
    assert "Open an image first" in controller.view.show_status.call_args.args[0]  # type: ignore[attr-defined]


def test_refine_options_follow_the_settings(controller: Controller) -> None:
    card, settings = controller.model.sr3_entry().card, controller.model.settings
    settings.preset, settings.custom_steps = "custom", 12
    settings.strength, settings.detail, settings.tile, settings.samples = 0.4, 1.5, 128, 3
    settings.ensemble, settings.grain = 2, 1.5
    options = controller.runs.refine_options(card, seed=11)
    assert (options.preset, options.steps, options.strength, options.texture_gain, options.tile, options.samples,
            options.seed, options.ensemble, options.grain) == (None, 12, 0.4, 1.5, 128, 3, 11, 2, 1.5)
    settings.preset, settings.strength, settings.detail, settings.tile = "quality", 0.0, 0.0, 0
    options = controller.runs.refine_options(card, seed=1)
    assert (options.preset, options.steps, options.strength, options.texture_gain, options.tile) == (
        "quality", None, None, None, None)


def test_the_view_is_only_ever_called_on_the_ui_thread(controller: Controller, qtbot: Any, sample_image: Path,
                                                       tmp_path: Path) -> None:
    """Worker signals must be queued to the UI thread; a direct call from a worker thread would crash Qt."""
    import threading

    view: MagicMock = controller.view  # type: ignore[assignment]
    threads: set[str] = set()
    for name in dir(View):
        if name.startswith("show_") or name in ("set_running", "update_batch_item", "clear_results"):
            getattr(view, name).side_effect = lambda *a, **k: threads.add(threading.current_thread().name)
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    with qtbot.waitSignal(controller.run_finished, timeout=30_000):
        controller.run()
    folder = tmp_path / "batch"
    write_image(folder / "a.png", (12, 8))
    write_image(folder / "sub" / "b.png", (8, 8))
    with qtbot.waitSignal(controller.batch_ready, timeout=5000):
        controller.open_paths([folder])
    with qtbot.waitSignal(controller.batch_finished, timeout=30_000):
        controller.run()
    assert [i.status for i in controller.model.batch.items] == ["done", "done"]
    assert threads == {threading.main_thread().name}


def test_large_previews_are_shown_at_most_ten_times_a_second(controller: Controller, qtbot: Any) -> None:
    from sr3_desktop.core.upscale.refine_types import RefineStep

    view: MagicMock = controller.view  # type: ignore[assignment]
    big = np.zeros((1000, 1000, 3), np.float32)
    small = np.zeros((64, 96, 3), np.float32)
    generation = controller.model.generation
    for step in range(1, 4):  # three large previews in a burst: only the first is drawn
        controller.runs._preview(generation, RefineStep(step, 10, big, big))
    assert view.show_preview.call_count == 1 and controller.model.last_step.step == 3
    qtbot.wait(120)
    controller.runs._preview(generation, RefineStep(4, 10, big, big))
    assert view.show_preview.call_count == 2
    for step in range(5, 8):  # small previews are cheap: every one is drawn
        controller.runs._preview(generation, RefineStep(step, 10, small, small))
    assert view.show_preview.call_count == 5


def test_the_busy_text_says_the_regression_estimate_is_computed_before_the_chain(
        controller: Controller, qtbot: Any, sample_image: Path) -> None:
    """A preset that starts from regression first computes the estimate: the busy bar says so instead of
    "Loading the model…" (issue 20). Catches: the busy text not replaced when the SR3 method starts."""
    view: MagicMock = controller.view  # type: ignore[assignment]
    with qtbot.waitSignal(controller.image_loaded, timeout=5000):
        controller.open_paths([str(sample_image)])
    controller.model.settings.preset, controller.model.settings.auto_compare = "balanced", False
    with qtbot.waitSignal(controller.run_finished, timeout=30_000):
        controller.run()
    busy = [args[0] for args in called_methods(view, "show_busy")]
    assert busy[-2:] == ["Loading the model…", "Computing the regression estimate SR3 starts from…"]
    controller.model.settings.preset = "fast"  # starts from bicubic: straight to the chain
    with qtbot.waitSignal(controller.run_finished, timeout=30_000):
        controller.run()
    assert [args[0] for args in called_methods(view, "show_busy")][-1] == "Refining with SR3…"
