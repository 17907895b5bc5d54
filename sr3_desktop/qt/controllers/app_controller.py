"""The app's controller: composes the model and the run, save, model, metrics and batch controllers,
gets images in (open, drop, paste, the command line), and routes background task results.

A task's result goes to the handler its kind names in ``routes``, an explicit table.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject

from sr3_desktop.core.imageio import LoadedImage, cleanup_stale_temp_files, load_image
from sr3_desktop.core.upscale.flow import refine_image
from sr3_desktop.core.upscale.output_size import OutputSize
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineResult
from sr3_desktop.core.upscale.run_models import Models
from sr3_desktop.qt.app_state import AppModel, BatchState
from sr3_desktop.qt.controllers.batch_controller import BatchController
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.controllers.events import AppEvents
from sr3_desktop.qt.controllers.metrics_controller import MetricsController
from sr3_desktop.qt.controllers.model_controller import ModelController
from sr3_desktop.qt.controllers.run_controller import RunController, no_regression_text, opened_placeholders
from sr3_desktop.qt.controllers.run_plan import RunPlan
from sr3_desktop.qt.controllers.run_slot import RunSlot
from sr3_desktop.qt.controllers.save_controller import SaveController
from sr3_desktop.qt.settings import AppSettings, SettingsStore
from sr3_desktop.qt.tasks import TaskRunner
from sr3_desktop.qt.views.protocol import View

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskRoute:
    """Where the result of one kind of background task goes."""

    done: Callable[[int, Any], None]
    """handler(token, value), called on the UI thread."""
    title: str
    """The error dialog's title when the task fails; "" logs the failure instead."""
    current_only: bool
    """Results (and failures) tagged with an older generation are dropped."""
    failed: Callable[[], None] | None = None
    """Also run when the task fails (before the dialog)."""


def instant_bicubic(image: LoadedImage, scale: int, native: int) -> tuple[LoadedImage, int, RefineResult | None]:
    """The bicubic upsample shown as soon as an image is open (the core's bicubic method, at the model's
    ``native`` scale resampled to ``scale``, as every result is)."""
    return image, scale, refine_image(image.rgb, RefineOptions(method="bicubic"), Models(scale=native),
                                      size=OutputSize(scale=scale))


class Controller(AppEvents):
    """Owns the model; the window (a View) only displays and forwards the user's commands."""

    def __init__(self, view: View, settings: AppSettings | None = None, store: SettingsStore | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.model = AppModel(settings or (store.load() if store else AppSettings()))
        self.tasks = TaskRunner(self)
        self.ctx = AppContext(self.model, view, self.tasks, self, store)
        self.slot = RunSlot(self.ctx, self)
        self.models = ModelController(self.ctx, scale_changed=self._show_open_image)
        self.metrics = MetricsController(self.ctx)
        self.runs = RunController(self.ctx, self.slot, self.models, self.metrics, self)
        self.saver = SaveController(self.ctx)
        self.batch = BatchController(self.ctx, self.slot, self, self)
        self.routes: dict[str, TaskRoute] = {
            "load": TaskRoute(self._loaded, "Cannot open image", True, failed=self._load_failed),
            "bicubic": TaskRoute(self._bicubic_ready, "", False),  # checks that its image is still open
            "plan": TaskRoute(self.batch.planned, "Cannot open folder", True),
            "reference": TaskRoute(self.metrics.reference_loaded, "Cannot open reference", True),
            "metrics": TaskRoute(self.metrics.scored, "Metrics unavailable", True),
            "save": TaskRoute(self.saver.saved, "Not saved", False),
            "models": TaskRoute(self.models.listed, "Cannot list models", False),
            "import": TaskRoute(self.models.imported, "Model not imported", False),
            "cleanup": TaskRoute(self._cleaned, "", False),
            "calibrate": TaskRoute(self.runs.prompt.calibrated, "", False, failed=self.runs.prompt.calibration_failed),
        }
        self.models_changed.connect(self.runs.prompt.prepare)
        self.tasks.done.connect(self._task_done)
        self.tasks.failed.connect(self._task_failed)
        self._clipboard_dir: Path | None = None
        self._clipboard_count = 0

    # --- start-up and shutdown ------------------------------------------------------------------
    def start(self) -> None:
        """Load the model list and tidy the output folder (temp files a crash left behind)."""
        self.models.refresh()
        folder = self.model.settings.output_folder()
        self.tasks.submit("cleanup", 0, lambda: cleanup_stale_temp_files(folder) if folder.is_dir() else 0)
        self.view.show_recent(list(self.model.settings.recent_files))

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop running work and wait for its threads; remove clipboard temp files."""
        self.slot.shutdown(timeout_ms)
        self.tasks.wait(timeout_ms)
        if self._clipboard_dir is not None:
            shutil.rmtree(self._clipboard_dir, ignore_errors=True)
            self._clipboard_dir = None

    def update_settings(self, settings: AppSettings) -> None:
        self.model.settings = settings
        self.ctx.persist()
        model = self.model
        if model.mode == "single" and model.image is not None and not self.slot.busy \
                and model.output_scale() != model.scale:
            self.model.begin_generation()  # results of the old scale no longer fit the frame
            self._show_open_image()
        self.runs.prompt.refresh()

    # --- commands -------------------------------------------------------------------------------
    def run(self) -> None:
        """Refine the open image, or start the batch."""
        if self.model.mode == "batch":
            self.batch.run()
        else:
            self.runs.run()

    def cancel(self) -> None:
        if self.slot.cancel():
            self.view.show_status("Cancelling…")

    def plan(self, compare: bool, size: tuple[int, int] | None = None) -> RunPlan | None:
        """For the batch (BatchHost): the run controller's plan."""
        return self.runs.plan(compare, size)

    # --- getting images in ----------------------------------------------------------------------
    def open_paths(self, paths: list[str] | list[Path]) -> None:
        """One file opens for refining; several files or a folder become a batch."""
        chosen = [Path(p) for p in paths if str(p)]
        if not chosen:
            return
        if len(chosen) == 1 and not chosen[0].is_dir():
            self.load(chosen[0])
        else:
            self.batch.queue(chosen)

    def load(self, path: Path, name: str | None = None) -> None:
        generation = self.model.begin_generation()
        self.view.show_loading(name or path.name)
        self.tasks.submit("load", generation, lambda: (load_image(path), name or path.name, path))

    def paste_image(self, rgb: np.ndarray) -> None:
        """An image from the clipboard: written to a private temp PNG (off the UI thread), then loaded."""
        if self._clipboard_dir is None:
            self._clipboard_dir = Path(tempfile.mkdtemp(prefix="sr3-clipboard-"))
        self._clipboard_count += 1
        path = self._clipboard_dir / f"clipboard-{self._clipboard_count}.png"
        pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
        generation = self.model.begin_generation()
        self.view.show_loading("clipboard image")

        def job() -> tuple[LoadedImage, str, Path]:
            from PIL import Image

            Image.fromarray(pixels, "RGB").save(path)
            return load_image(path), "clipboard", path

        self.tasks.submit("load", generation, job)

    def clear(self) -> None:
        """Forget the image or batch and go back to the drop zone."""
        self.model.begin_generation()
        self.model.mode = "empty"
        self.model.batch = BatchState()
        self.forget_image()
        self.view.show_empty()

    def forget_image(self) -> None:
        """Drop the single image, its results, metrics and reference, and what the view showed of them."""
        self.model.forget_image()
        self.view.show_metrics([], False)
        self.view.show_reference(None)
        self.view.show_uncertainty(None, 1)

    def _show_open_image(self) -> None:
        """Put the open image on screen at the chosen model's scale, and start its instant bicubic."""
        model, image = self.model, self.model.image
        assert image is not None
        model.scale = model.output_scale()
        model.results.clear()
        model.metrics.clear()
        self.view.show_metrics([], model.reference is not None)
        self.view.show_image(image, model.image_name, model.scale)
        card = model.sr3_card()
        scale = card.scale if card else None
        has_regression = model.regression_entry(scale) is not None
        self.view.clear_results(opened_placeholders(model.settings.auto_compare, has_regression,
                                                    no_regression_text(model, scale),
                                                    model.onepass_entry() is not None))
        scale, native = model.scale, model.model_scale()
        self.tasks.submit("bicubic", model.generation, lambda: instant_bicubic(image, scale, native))

    # --- background task results -----------------------------------------------------------------
    def _task_done(self, kind: str, token: int, value: Any) -> None:
        route = self.routes[kind]
        if route.current_only and not self.model.is_current(token):
            return  # the user has moved on
        route.done(token, value)

    def _task_failed(self, kind: str, token: int, message: str) -> None:
        route = self.routes[kind]
        if route.current_only and not self.model.is_current(token):
            return
        if route.failed is not None:
            route.failed()
        if not route.title:
            log.warning("background task %s failed: %s", kind, message)
            return
        self.ctx.report_error(route.title, message)

    def _loaded(self, _token: int, value: tuple[LoadedImage, str, Path]) -> None:
        image, name, path = value
        log.info("opened %s (%dx%d, %s)", path, image.size[0], image.size[1], image.format)
        model = self.model
        model.open_image(image, name)
        self.view.show_reference(None)
        self.view.show_metrics([], False)
        self._show_open_image()
        width, height = image.size
        notices = " ".join(image.notices)
        self.view.show_status(f"{name}: {width}×{height} → {width * model.scale}×{height * model.scale}. "
                              "Press Ctrl+Enter to run." + (f" {notices}" if notices else ""))
        self.runs.prompt.refresh()
        if not (self._clipboard_dir and path.is_relative_to(self._clipboard_dir)):
            model.settings.add_recent(str(path))
            self.ctx.persist()
            self.view.show_recent(list(model.settings.recent_files))
        self.image_loaded.emit()

    def _load_failed(self) -> None:
        self.view.show_status("")
        if self.model.mode == "empty":
            self.view.show_empty()

    def _bicubic_ready(self, _token: int, value: tuple[LoadedImage, int, RefineResult | None]) -> None:
        image, scale, result = value
        model = self.model
        if result is None or image is not model.image or scale != model.scale or "bicubic" in model.results:
            return  # another image, another scale, or a run's own bicubic result is already shown
        self.view.show_bicubic(result.image, f"{result.seconds:.2f} s")
        self.bicubic_shown.emit()

    def _cleaned(self, _token: int, removed: int) -> None:
        if removed:
            log.info("removed %d stale temp file(s) from the output folder", removed)
