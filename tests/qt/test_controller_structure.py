"""The controllers' plumbing: the generation counter, the task handler table, devices, and the
import graph of the Qt layer. Views are ``MagicMock(spec=View)`` (ndv's style); the controllers,
workers, task runner and core are real.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
from qt_helpers import write_image

import sr3_desktop.qt
from sr3_desktop.core.imageio import load_image
from sr3_desktop.core.model_files.registry import list_models
from sr3_desktop.core.upscale.refine_types import RefineResult, RefineStep
from sr3_desktop.qt.controllers.app_controller import Controller
from sr3_desktop.qt.settings import AppSettings
from sr3_desktop.qt.tasks import TASK_KINDS
from sr3_desktop.qt.view_data import BatchItem, MetricsRow
from sr3_desktop.qt.views.protocol import View
from sr3_desktop.qt.views.settings_panel import device_choices


def open_image(controller: Controller, qtbot: Any, path: Path) -> None:
    with qtbot.waitSignal(controller.image_loaded, timeout=10_000):
        controller.open_paths([path])
    qtbot.waitUntil(lambda: controller.tasks.pending == 0, timeout=10_000)  # the instant bicubic too


# --- the generation counter ------------------------------------------------------------------------
def test_results_of_a_generation_left_by_begin_generation_are_dropped(controller: Controller, qtbot: Any,
                                                                       sample_image: Path) -> None:
    view: MagicMock = controller.view  # type: ignore[assignment]
    open_image(controller, qtbot, sample_image)
    old = controller.model.generation
    new = controller.model.begin_generation()
    assert new == old + 1 and not controller.model.is_current(old)
    image = np.full((64, 96, 3), 0.25, np.float32)
    result = RefineResult(image, None, "sr3", "fast", 4, 0.1)
    finished: list[bool] = []
    controller.run_finished.connect(finished.append)
    view.reset_mock()

    def deliver(generation: int) -> None:  # what a run's worker and the task pool send back
        controller.runs._result(generation, "sr3", result)
        controller.runs._preview(generation, RefineStep(2, 4, image, image))
        controller.runs._progress(generation, 2, 4)
        controller.runs._failed(generation, "late failure")
        controller._task_done("metrics", generation, [MetricsRow("sr3", 1.5)])
        controller.batch._item_changed(generation, 0, BatchItem(sample_image, Path("x.png"), "x"))

    deliver(old)
    for name in ("show_result", "show_preview", "show_error", "show_metrics", "update_batch_item"):
        getattr(view, name).assert_not_called()
    assert controller.model.results == {} and controller.model.metrics == {} and finished == []
    controller.runs._method = "sr3"
    deliver(new)  # the same, tagged with the current generation, all arrives
    for name in ("show_result", "show_preview", "show_error", "show_metrics", "update_batch_item"):
        getattr(view, name).assert_called_once()
    assert controller.model.results == {"sr3": result}
    assert controller.model.metrics == {"sr3": MetricsRow("sr3", 1.5)}


def test_begin_generation_stops_the_run_of_the_old_one(controller: Controller, qtbot: Any,
                                                      sample_image: Path) -> None:
    open_image(controller, qtbot, sample_image)
    controller.model.settings.preset, controller.model.settings.custom_steps = "custom", 400
    with qtbot.waitSignal(controller.preview_shown, timeout=30_000):
        controller.run()
    worker = controller.slot.worker
    assert worker is not None and controller.slot.busy
    controller.model.begin_generation()
    assert not controller.slot.busy and worker.aborted
    qtbot.waitUntil(lambda: controller.slot.thread_count() == 0, timeout=10_000)  # it stopped by itself
    assert "sr3" not in controller.model.results


# --- the handler table -------------------------------------------------------------------------------
def test_every_task_kind_has_a_route() -> None:
    view = MagicMock(spec=View)
    controller = Controller(view, AppSettings())
    assert set(controller.routes) == set(TASK_KINDS)


def test_the_handler_table_sends_each_result_to_its_handler(controller: Controller, qtbot: Any, sample_image: Path,
                                                            tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    view: MagicMock = controller.view  # type: ignore[assignment]
    open_image(controller, qtbot, sample_image)
    model = controller.model
    reference_path = write_image(tmp_path / "hr.png", (96, 64), seed=4)
    reference = load_image(reference_path)
    entries = list_models()
    sr3_entry = next(e for e in entries if e.kind == "sr3")
    bicubic = np.full((64, 96, 3), 0.5, np.float32)
    rows = [MetricsRow("bicubic", 2.0)]
    items = [BatchItem(sample_image, tmp_path / "out" / "sample.png", "sample.png")]
    saved: list[Path] = []
    controller.saved.connect(saved.append)
    caplog.set_level(logging.INFO)

    def last(name: str) -> tuple[Any, ...]:
        return getattr(view, name).call_args.args  # type: ignore[no-any-return]

    cases: dict[str, tuple[Callable[[], Any], Callable[[], None]]] = {
        "load": (lambda: (load_image(sample_image), "renamed.png", sample_image),
                 lambda: last("show_image")[1:] == ("renamed.png", 4) or pytest.fail("load")),
        "bicubic": (lambda: (model.image, model.scale, RefineResult(bicubic, None, "bicubic", None, 0, 0.01)),
                    lambda: last("show_bicubic")[0] is bicubic or pytest.fail("bicubic")),
        "reference": (lambda: reference,
                      lambda: last("show_reference") == ("hr.png",) or pytest.fail("reference")),
        "metrics": (lambda: rows, lambda: last("show_metrics")[0] == rows or pytest.fail("metrics")),
        "save": (lambda: (tmp_path / "saved.png", ["a note"]),
                 lambda: (last("show_saved") == (tmp_path / "saved.png",) and saved == [tmp_path / "saved.png"])
                 or pytest.fail("save")),
        "models": (lambda: entries, lambda: last("show_models")[0] == entries or pytest.fail("models")),
        "import": (lambda: sr3_entry,
                   lambda: last("show_status")[0].startswith(f"Imported {sr3_entry.name}") or pytest.fail("import")),
        "cleanup": (lambda: 3, lambda: "removed 3 stale temp file(s)" in caplog.text or pytest.fail("cleanup")),
        "calibrate": (lambda: False, lambda: bool(view.show_estimate.call_args_list) or pytest.fail("calibrate")),
        "plan": (lambda: (items, (str(tmp_path / "out"), "png")),
                 lambda: last("show_batch")[0] == items or pytest.fail("plan")),  # last: it leaves the image
    }
    assert list(cases) == [k for k in cases if k in TASK_KINDS] and set(cases) == set(TASK_KINDS)
    for kind, (value, check) in cases.items():
        view.reset_mock()
        controller._task_done(kind, model.generation, value())
        check()
        qtbot.waitUntil(lambda: controller.tasks.pending == 0, timeout=10_000)  # follow-up tasks (bicubic...)


def test_failures_are_routed_to_their_titles_and_stale_ones_dropped(controller: Controller, qtbot: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    view: MagicMock = controller.view  # type: ignore[assignment]
    current, stale = controller.model.generation, controller.model.generation - 1
    titles = {"load": "Cannot open image", "plan": "Cannot open folder", "reference": "Cannot open reference",
              "metrics": "Metrics unavailable", "save": "Not saved", "models": "Cannot list models",
              "import": "Model not imported"}
    for kind, title in titles.items():
        view.reset_mock()
        controller._task_failed(kind, current, f"{kind} went wrong")
        view.show_error.assert_called_once_with(title, f"{kind} went wrong")
    caplog.set_level(logging.WARNING)
    for kind in ("cleanup", "bicubic"):  # logged, not shown
        view.reset_mock()
        controller._task_failed(kind, current, f"{kind} went wrong")
        view.show_error.assert_not_called()
        assert f"{kind} went wrong" in caplog.text
    for kind in ("load", "plan", "reference", "metrics"):  # the user has moved on: nothing to say
        view.reset_mock()
        controller._task_failed(kind, stale, "late")
        view.show_error.assert_not_called()
    view.reset_mock()
    controller._task_failed("save", stale, "disk full")  # a save always reports, whatever came after
    view.show_error.assert_called_once_with("Not saved", "disk full")


# --- devices ---------------------------------------------------------------------------------------
def test_devices_are_those_the_core_can_run() -> None:
    assert device_choices(["CPUExecutionProvider"]) == [("Automatic", "auto"), ("CPU", "cpu")]
    with_gpu = device_choices(["CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"])
    assert with_gpu == [("Automatic", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"), ("CoreML", "coreml")]


# --- the import graph ------------------------------------------------------------------------------
def qt_imports() -> dict[str, set[str]]:
    """Module -> the sr3_desktop.qt modules it imports, TYPE_CHECKING blocks and function bodies included."""
    root = Path(sr3_desktop.qt.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sr3_desktop.qt"):
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("sr3_desktop.qt"))
        graph[name] = found
    return {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}


def test_no_two_qt_modules_import_each_other_even_for_type_checking() -> None:
    graph = qt_imports()
    assert "sr3_desktop.qt.controllers.batch_controller" in graph and len(graph) > 30
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join([*path, name, target]))
            if target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    batch_imports = graph["sr3_desktop.qt.controllers.batch_controller"]
    assert "sr3_desktop.qt.controllers.app_controller" not in batch_imports  # it knows only BatchHost
