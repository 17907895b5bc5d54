"""The controller: holds the app's state, starts workers and tasks, and tells the view what to show.

Every load and run bumps ``generation``; results that come back tagged with an older generation
belong to an image or run the user has left, and are dropped (the ndv pattern).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from sr3_desktop.core import models
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import (
    LoadedImage,
    check_output_size,
    cleanup_stale_temp_files,
    load_image,
    save_image,
    save_notes,
    upscale_alpha,
)
from sr3_desktop.core.metrics import consistency, psnr_y, sharpness, ssim_y
from sr3_desktop.core.model_card import ModelCard
from sr3_desktop.core.pipeline import RefineOptions, RefineResult, RefineStep
from sr3_desktop.qt.batch import BatchWorker
from sr3_desktop.qt.batch_control import BatchControl
from sr3_desktop.qt.settings import CUSTOM_PRESET, AppSettings, SettingsStore
from sr3_desktop.qt.state import METHOD_LABELS, RESULT_METHODS, BatchItem, MetricsRow
from sr3_desktop.qt.tasks import TaskRunner
from sr3_desktop.qt.view import View
from sr3_desktop.qt.views.progress import ProgressClock
from sr3_desktop.qt.worker import RefineJob, RefineWorker, start_in_thread

log = logging.getLogger(__name__)
MAX_SEED = 2**31 - 1
LARGE_PREVIEW_PIXELS = 1_000_000
LARGE_PREVIEW_INTERVAL_S = 0.1
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tiff"}


class Controller(QObject):
    """Single-image runs, compare, metrics, saving, models, settings and batches."""

    image_loaded = Signal()
    preview_shown = Signal(int)  # step
    result_shown = Signal(str)  # method
    run_finished = Signal(bool)  # cancelled
    metrics_ready = Signal()
    saved = Signal(object)  # Path
    models_changed = Signal()
    batch_ready = Signal()
    batch_finished = Signal(str)  # summary
    error_shown = Signal(str)  # message

    def __init__(self, view: View, settings: AppSettings | None = None, store: SettingsStore | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.store = store
        self.settings = settings or (store.load() if store else AppSettings())
        self.tasks = TaskRunner(self)
        self.tasks.done.connect(self._task_done)
        self.tasks.failed.connect(self._task_failed)
        self.generation = 0
        self.mode = "empty"  # empty / single / batch
        self.image: LoadedImage | None = None
        self.image_name = ""
        self.scale = 4  # of the SR3 model chosen when the image was shown
        self.results: dict[str, RefineResult] = {}
        self.metrics: dict[str, MetricsRow] = {}
        self.reference: LoadedImage | None = None
        self.last_step: RefineStep | None = None
        self.model_entries: list[Any] = []
        self.batch = BatchControl(self)
        self._worker: RefineWorker | BatchWorker | None = None  # the run of the current generation
        self._threads: list[tuple[QThread, QObject]] = []
        self._method = ""
        self._clock = ProgressClock()
        self._last_preview_at = 0.0
        self._clipboard_dir: Path | None = None
        self._clipboard_count = 0

    # --- start-up and shutdown ------------------------------------------------------------------
    def start(self) -> None:
        """Load the model list and tidy the output folder (temp files a crash left behind)."""
        self.refresh_models()
        folder = self.settings.output_folder()
        self.tasks.submit("cleanup", 0, lambda: cleanup_stale_temp_files(folder) if folder.is_dir() else 0)
        self.view.show_recent(list(self.settings.recent_files))

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop running work and wait for its threads; remove clipboard temp files."""
        if self._worker is not None:
            self._worker.abort()
        for thread, worker in list(self._threads):
            abort = getattr(worker, "abort", None)
            if abort:
                abort()
            thread.quit()
            thread.wait(timeout_ms)
        self._threads.clear()
        self._worker = None
        self.tasks.wait(timeout_ms)
        if self._clipboard_dir is not None:
            shutil.rmtree(self._clipboard_dir, ignore_errors=True)
            self._clipboard_dir = None

    @property
    def batch_items(self) -> list[BatchItem]:
        return self.batch.items

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def thread_count(self) -> int:
        """Worker threads not yet reaped (tests: must fall back to 0)."""
        return len(self._threads)

    # --- settings -------------------------------------------------------------------------------
    def update_settings(self, settings: AppSettings) -> None:
        self.settings = settings
        self.persist()

    def persist(self) -> None:
        if self.store is not None:
            self.store.save(self.settings)

    def set_preview_kind(self, kind: str) -> None:
        self.settings.preview_kind = kind
        self.persist()
        if self._worker is not None and self.last_step is not None:
            self._show_preview(self.last_step)

    # --- models ---------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self.tasks.submit("models", 0, models.list_models)

    def select_model(self, kind: str, name: str) -> None:
        if kind == "sr3":
            self.settings.sr3_model = name
            entry = self.sr3_entry()
            self.view.show_presets(entry.card if entry else None, self.settings.preset)
            if entry is not None and self.image is not None and entry.card.scale != self.scale:
                self.scale = entry.card.scale
                self.results.clear()
                self.view.show_image(self.image, self.image_name, self.scale)
        else:
            self.settings.regression_model = name
        self.persist()

    def sr3_entry(self) -> Any | None:
        return self._entry("sr3", self.settings.sr3_model)

    def regression_entry(self) -> Any | None:
        return self._entry("regression", self.settings.regression_model)

    def _entry(self, kind: str, name: str) -> Any | None:
        candidates = [e for e in self.model_entries if e.card.kind == kind]
        for entry in candidates:
            if entry.name == name:
                return entry
        bundled = [e for e in candidates if e.bundled]
        return (bundled or candidates or [None])[0]

    def import_model(self, path: str | Path) -> None:
        self.view.show_status(f"Checking {Path(path).name}…")
        self.tasks.submit("import", 0, lambda: models.import_model(Path(path)))

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
        self.abandon_run()
        self.generation += 1
        self.view.show_loading(name or path.name)
        self.tasks.submit("load", self.generation, lambda: (load_image(path), name or path.name, path))

    def paste_image(self, rgb: np.ndarray) -> None:
        """An image from the clipboard: written to a private temp PNG (off the UI thread), then loaded."""
        if self._clipboard_dir is None:
            self._clipboard_dir = Path(tempfile.mkdtemp(prefix="sr3-clipboard-"))
        self._clipboard_count += 1
        path = self._clipboard_dir / f"clipboard-{self._clipboard_count}.png"
        pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
        self.abandon_run()
        self.generation += 1
        self.view.show_loading("clipboard image")

        def job() -> tuple[LoadedImage, str, Path]:
            from PIL import Image

            Image.fromarray(pixels, "RGB").save(path)
            return load_image(path), "clipboard", path

        self.tasks.submit("load", self.generation, job)

    def clear(self) -> None:
        """Forget the image or batch and go back to the drop zone."""
        self.abandon_run()
        self.generation += 1
        self.mode = "empty"
        self.batch.reset()
        self.forget_image()
        self.view.show_empty()

    def forget_image(self) -> None:
        """Drop the single image, its results, metrics and reference."""
        self.image, self.reference, self.last_step = None, None, None
        self.results.clear()
        self.metrics.clear()
        self.view.show_metrics([], False)
        self.view.show_reference(None)
        self.view.show_uncertainty(None, 1)

    def load_reference(self, path: str | Path) -> None:
        if self.image is None:
            self.view.show_status("Open an image first; the reference is its high-resolution original.")
            return
        self.tasks.submit("reference", self.generation, lambda: load_image(Path(path)))

    # --- running --------------------------------------------------------------------------------
    def run(self) -> None:
        if self._worker is not None:
            return
        if self.mode == "batch":
            self.batch.run()
            return
        if self.image is None:
            self.view.show_status("Open an image first: drop it on the window, press Ctrl+O or paste with Ctrl+V.")
            return
        sr3 = self.require_sr3()
        if sr3 is None:
            return
        scale = sr3.card.scale
        try:
            check_output_size(self.image.size[0] * scale, self.image.size[1] * scale)
        except SR3Error as err:
            self.report_error("Image too large", str(err))
            return
        options = self.refine_options(sr3.card, self.next_seed())
        compare = self.settings.auto_compare
        regression = self.regression_entry() if compare or self.starts_from_regression(sr3.card, options) else None
        methods = ("bicubic", "regression", "sr3") if compare else ("sr3",)
        self.generation += 1
        self.results.clear()
        self.metrics.clear()
        self.last_step = None
        self.view.clear_results(self._placeholders(compare, regression is not None))
        self.view.show_metrics([], self.reference is not None)
        self.view.show_uncertainty(None, options.samples)
        job = RefineJob(self.generation, self.image.rgb, options, Path(sr3.path),
                        Path(regression.path) if regression else None, self.settings.device, methods)
        worker = RefineWorker(job)
        worker.engine_ready.connect(self.engine_ready)
        worker.method_started.connect(self._method_started)
        worker.progress.connect(self._progress)
        worker.preview.connect(self._preview)
        worker.result.connect(self._result)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        self.launch(worker, f"sr3-refine-{self.generation}")
        self.view.set_running(True, batch=False)
        self.view.show_busy("Loading the model…")

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.abort()
            self.view.show_status("Cancelling…")

    def refine_options(self, card: ModelCard, seed: int) -> RefineOptions:
        s = self.settings
        preset = s.preset if s.preset in card.inference_presets else None
        steps = s.custom_steps if s.preset == CUSTOM_PRESET else None
        return RefineOptions(
            method="sr3", preset=preset, steps=steps, strength=s.strength if s.strength > 0 else None,
            seed=seed, samples=max(1, s.samples), tile=s.tile or None, preview_every=max(1, s.preview_every),
        )

    def starts_from_regression(self, card: ModelCard, options: RefineOptions) -> bool:
        preset = card.inference_presets.get(options.preset or card.default_preset)
        return preset is not None and preset.start == "regression"

    def require_sr3(self) -> Any | None:
        entry = self.sr3_entry()
        if entry is None:
            self.report_error("No SR3 model", "No SR3 model is installed yet. Import an exported .onnx model with "
                                        "Models ▸ Import model…")
        return entry

    def next_seed(self) -> int:
        if not self.settings.seed_locked:
            self.settings.seed = random.randint(0, MAX_SEED)
            self.view.show_seed(self.settings.seed)
            self.persist()
        return self.settings.seed

    def _placeholders(self, compare: bool, has_regression: bool) -> dict[str, str]:
        off = "Turned off: enable “Also run bicubic and regression” in Settings"
        return {
            "bicubic": "Computing…" if compare else off,
            "regression": ("Computing…" if has_regression else "No regression model installed") if compare else off,
            "sr3": "Starting…",
        }

    def launch(self, worker: RefineWorker | BatchWorker, name: str) -> None:
        """Run ``worker`` in its own thread as the current generation's run."""
        thread = start_in_thread(worker, name)
        thread.finished.connect(lambda: QTimer.singleShot(0, self._reap_threads))
        self._threads.append((thread, worker))
        self._worker = worker
        self._clock = ProgressClock()

    def _reap_threads(self) -> None:
        for pair in list(self._threads):
            thread = pair[0]
            if thread.isFinished():
                thread.wait()
                self._threads.remove(pair)

    def finish_run(self) -> None:
        """The current run's worker has finished."""
        self._worker = None

    def abandon_run(self) -> None:
        """The user moved on: stop the current run; its late signals are dropped by generation."""
        if self._worker is not None:
            self._worker.abort()
            self._worker = None
            self.view.set_running(False, batch=self.mode == "batch")

    # --- worker signals (each checks the generation) ---------------------------------------------
    def engine_ready(self, generation: int, providers: list[str], note: str | None) -> None:
        if generation == self.generation:
            self.view.show_engine(providers, note)

    def _method_started(self, generation: int, method: str) -> None:
        if generation != self.generation:
            return
        self._method = method
        self._clock = ProgressClock()
        self.view.show_status("Refining with SR3…" if method == "sr3" else f"Computing {METHOD_LABELS[method]}…")

    def _progress(self, generation: int, step: int, total: int) -> None:
        if generation != self.generation or self._method != "sr3":
            return
        rate = self._clock.rate(step)
        self.view.show_progress(step, total, rate, ProgressClock.eta(step, total, rate), "Step")

    def _preview(self, generation: int, step: RefineStep) -> None:
        if generation != self.generation:
            return
        self.last_step = step
        # Turning a large preview into pixels costs the UI thread tens of ms: at most 10 per second.
        now = time.perf_counter()
        large = step.pred_y0.shape[0] * step.pred_y0.shape[1] >= LARGE_PREVIEW_PIXELS
        if large and now - self._last_preview_at < LARGE_PREVIEW_INTERVAL_S:
            return
        self._last_preview_at = now
        self._show_preview(step)

    def _show_preview(self, step: RefineStep) -> None:
        kind = self.settings.preview_kind
        self.view.show_preview(step.y_t if kind == "y_t" else step.pred_y0, step.step, step.total, kind)
        self.preview_shown.emit(step.step)

    def _result(self, generation: int, method: str, result: RefineResult) -> None:
        if generation != self.generation:
            return
        self.results[method] = result
        self.view.show_result(method, result.image, self._caption(result))
        if method == "sr3":
            self.view.show_uncertainty(result.uncertainty, self.settings.samples)
            note = "; ".join(result.notes)
            self.view.show_status(f"Done in {result.seconds:.1f} s" + (f" ({note})" if note else "")
                                  + ". Save with Ctrl+S.")
        self.result_shown.emit(method)
        self._compute_metrics([method])

    def _caption(self, result: RefineResult) -> str:
        if result.method == "sr3":
            samples = f" · K={self.settings.samples}" if self.settings.samples > 1 else ""
            return f"{result.preset or 'custom'} · {result.steps} steps{samples} · {result.seconds:.1f} s"
        return f"{result.seconds:.2f} s"

    def _failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self.report_error("Refinement failed", message)

    def _finished(self, generation: int, cancelled: bool) -> None:
        if generation != self.generation:
            return
        self.finish_run()
        self.view.set_running(False, batch=False)
        if cancelled:
            self.view.show_status("Cancelled. Nothing was saved.")
            pending = {m: "Cancelled: press Run (Ctrl+Enter) to start again" for m in RESULT_METHODS
                       if m not in self.results}
            self.view.clear_results(pending)
            self.last_step = None
        self.run_finished.emit(cancelled)

    # --- saving ---------------------------------------------------------------------------------
    def default_output_path(self) -> Path | None:
        entry = self.sr3_entry()
        if self.image is None or entry is None:
            return None
        stem = Path(self.image_name).stem or "image"
        extension = EXTENSIONS.get(self.settings.output_format, ".png")
        return self.settings.output_folder() / f"{stem}_x{entry.card.scale}_sr3{extension}"

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> None:
        """Save the SR3 result (atomic; a new name if the file exists, unless ``overwrite``)."""
        result = self.results.get("sr3")
        if result is None or self.image is None:
            self.view.show_status("Nothing to save yet: run the refinement first (Ctrl+Enter).")
            return
        target = Path(path) if path else self.default_output_path()
        assert target is not None
        fmt = EXTENSIONS_BY_SUFFIX.get(target.suffix.lower()) if path else self.settings.output_format
        if fmt is None:
            self.report_error("Cannot save", f"{target.name}: choose a .png, .jpg, .webp or .tiff file name.")
            return
        image, scale = self.image, result.image.shape[0] // self.image.rgb.shape[0]
        pixels = result.image

        def job() -> tuple[Path, list[str]]:
            alpha = upscale_alpha(image.alpha, scale) if image.alpha is not None else None
            target.parent.mkdir(parents=True, exist_ok=True)
            written = save_image(target, pixels, alpha=alpha, source=image, fmt=fmt, overwrite=overwrite,
                                 protected=[image.path])
            return written, save_notes(fmt, alpha=alpha, source=image)

        self.view.show_status(f"Saving {target.name}…")
        self.tasks.submit("save", self.generation, job)

    # --- metrics --------------------------------------------------------------------------------
    def _compute_metrics(self, methods: list[str]) -> None:
        if self.image is None:
            return
        lr = self.image.rgb
        hr = self.reference.rgb if self.reference is not None else None
        outputs = {m: self.results[m].image for m in methods if m in self.results}
        if not outputs:
            return

        def job() -> list[MetricsRow]:
            rows = []
            for method, output in outputs.items():
                scale = output.shape[0] // lr.shape[0]
                row = MetricsRow(method, consistency(output, lr, scale))
                if hr is not None and hr.shape == output.shape:
                    row = replace(row, psnr=psnr_y(output, hr), ssim=ssim_y(output, hr),
                                  sharpness=sharpness(output, hr))
                rows.append(row)
            return rows

        self.tasks.submit("metrics", self.generation, job)

    # --- background task results -----------------------------------------------------------------
    def _task_done(self, kind: str, token: int, value: Any) -> None:
        handler = getattr(self, f"_on_{kind}_done", None)
        if handler is not None:
            handler(token, value)

    def _task_failed(self, kind: str, token: int, message: str) -> None:
        titles = {"load": "Cannot open image", "reference": "Cannot open reference", "save": "Not saved",
                  "import": "Model not imported", "models": "Cannot list models", "plan": "Cannot open folder",
                  "metrics": "Metrics unavailable", "cleanup": ""}
        if kind in ("load", "plan", "reference", "metrics") and token != self.generation:
            return  # the user has moved on
        if kind == "cleanup":
            log.warning("temp-file cleanup failed: %s", message)
            return
        if kind == "load":
            self.view.show_status("")
            if self.mode == "empty":
                self.view.show_empty()
        self.report_error(titles.get(kind, "Error"), message)

    def _on_load_done(self, token: int, value: tuple[LoadedImage, str, Path]) -> None:
        if token != self.generation:
            return
        image, name, path = value
        log.info("opened %s (%dx%d, %s)", path, image.size[0], image.size[1], image.format)
        entry = self.sr3_entry()
        scale = self.scale = entry.card.scale if entry else 4
        self.mode = "single"
        self.image, self.image_name = image, name
        self.results.clear()
        self.metrics.clear()
        self.reference = None
        self.view.show_image(image, name, scale)
        self.view.show_reference(None)
        self.view.show_metrics([], False)
        self.view.clear_results(self._placeholders(self.settings.auto_compare, self.regression_entry() is not None))
        width, height = image.size
        notices = " ".join(image.notices)
        self.view.show_status(f"{name}: {width}×{height} → {width * scale}×{height * scale}. Press Ctrl+Enter to run."
                              + (f" {notices}" if notices else ""))
        if not (self._clipboard_dir and path.is_relative_to(self._clipboard_dir)):
            self.settings.add_recent(str(path))
            self.persist()
            self.view.show_recent(list(self.settings.recent_files))
        self.image_loaded.emit()

    def _on_plan_done(self, token: int, value: tuple[list[BatchItem], tuple[str, str]]) -> None:
        if token == self.generation:
            self.batch.planned(*value)

    def _on_reference_done(self, token: int, image: LoadedImage) -> None:
        if token != self.generation or self.image is None:
            return
        entry = self.sr3_entry()
        scale = entry.card.scale if entry else 4
        width, height = self.image.size[0] * scale, self.image.size[1] * scale
        if image.size != (width, height):
            self.report_error("Reference does not match",
                        f"The reference is {image.size[0]}×{image.size[1]}, but the results are {width}×{height}. "
                        f"Load the high-resolution original of this image (the input is it shrunk {scale}×).")
            return
        self.reference = image
        self.view.show_reference(image.path.name)
        self._compute_metrics(list(self.results))

    def _on_metrics_done(self, token: int, rows: list[MetricsRow]) -> None:
        if token != self.generation:
            return
        for row in rows:
            self.metrics[row.method] = row
        ordered = [self.metrics[m] for m in RESULT_METHODS if m in self.metrics]
        self.view.show_metrics(ordered, self.reference is not None)
        self.metrics_ready.emit()

    def _on_save_done(self, token: int, value: tuple[Path, list[str]]) -> None:
        path, notes = value
        self.view.show_saved(path)
        self.view.show_status(f"Saved {path}" + (f" ({' '.join(notes)})" if notes else ""))
        self.saved.emit(path)

    def _on_models_done(self, token: int, entries: list[Any]) -> None:
        self.model_entries = list(entries)
        sr3, regression = self.sr3_entry(), self.regression_entry()
        self.view.show_models(self.model_entries, sr3.name if sr3 else "", regression.name if regression else "")
        self.view.show_presets(sr3.card if sr3 else None, self.settings.preset)
        if sr3 is not None and self.image is not None and sr3.card.scale != self.scale:
            self.scale = sr3.card.scale  # the image arrived before the model list
            self.view.show_image(self.image, self.image_name, self.scale)
        if sr3 is None:
            self.view.show_status("No SR3 model installed: import one with Models ▸ Import model…")
        self.models_changed.emit()

    def _on_import_done(self, token: int, entry: Any) -> None:
        if entry.card.kind == "sr3":
            self.settings.sr3_model = entry.name
        else:
            self.settings.regression_model = entry.name
        self.persist()
        self.view.show_status(f"Imported {entry.name} ({entry.card.kind}, ×{entry.card.scale}).")
        self.refresh_models()

    def _on_cleanup_done(self, token: int, removed: int) -> None:
        if removed:
            log.info("removed %d stale temp file(s) from the output folder", removed)

    def report_error(self, title: str, message: str) -> None:
        self.view.show_error(title, message)
        self.error_shown.emit(message)


EXTENSIONS_BY_SUFFIX = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff",
                        ".tiff": "tiff"}

