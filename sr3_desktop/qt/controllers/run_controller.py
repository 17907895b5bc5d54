"""Single-image runs: plan the options, estimate the time (and ask first when it is long), start the
worker, show previews and results as they come.

Every worker signal carries the generation of its run; one of an older generation is dropped.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from PySide6.QtCore import QObject

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import check_output_size
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineResult, RefineStep, method_label
from sr3_desktop.core.upscale.run_models import preset_of, regression_for
from sr3_desktop.qt.app_state import AppModel
from sr3_desktop.qt.controllers.consent import LongRunPrompt, run_methods
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.controllers.metrics_controller import MetricsController
from sr3_desktop.qt.controllers.model_controller import ModelController
from sr3_desktop.qt.controllers.run_plan import RunPlan
from sr3_desktop.qt.controllers.run_slot import RunSlot
from sr3_desktop.qt.refine_worker import RefineJob, RefineWorker
from sr3_desktop.qt.settings import CUSTOM_PRESET, MAX_SEED
from sr3_desktop.qt.view_data import RESULT_METHODS
from sr3_desktop.qt.views.progress_bar import ProgressClock

LARGE_PREVIEW_PIXELS = 1_000_000
LARGE_PREVIEW_INTERVAL_S = 0.1
COMPARE_OFF = "Turned off: enable “Also run the other methods” in Settings"
NO_REGRESSION = "No regression model installed"
NO_ONEPASS = "No one-pass model: Models ▸ Import model… takes a Real-ESRGAN-style .onnx file of this scale"
PRESS_RUN = "Press Run (Ctrl+Enter) to refine"
SR3_SKIPPED = "Not run: you chose the regression model instead of a long SR3 run"


def no_regression_text(model: AppModel, scale: int | None) -> str:
    """The regression pane's text when no regression model fits the SR3 model's scale."""
    scales = sorted({e.card.scale for e in model.model_entries if e.card.kind == "regression"})
    if not scales or scale is None:
        return NO_REGRESSION
    return f"No regression model fits {scale}x (installed: {', '.join(f'{s}x' for s in scales)})"


def opened_placeholders(compare: bool, has_regression: bool, missing: str = NO_REGRESSION,
                        has_onepass: bool = False) -> dict[str, str]:
    """The result panes of a just-opened image (bicubic is on its way); ``missing``: the regression pane's
    text without a regression model of the SR3 model's scale (``no_regression_text``)."""
    regression = ("Press Run (Ctrl+Enter) to compute" if has_regression else missing) if compare else COMPARE_OFF
    onepass = ("Press Run (Ctrl+Enter) to compute" if has_onepass else NO_ONEPASS) if compare else COMPARE_OFF
    return {"bicubic": "Computing…", "regression": regression, "onepass": onepass, "sr3": PRESS_RUN}


class RunController(QObject):
    """A QObject on the UI thread, so the worker's signals reach its methods there (queued)."""

    def __init__(self, ctx: AppContext, slot: RunSlot, models: ModelController, metrics: MetricsController,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.slot, self.models, self.metrics = ctx, slot, models, metrics
        self._methods: tuple[str, ...] = ()
        self._notes: tuple[str, ...] = ()
        self._method = ""
        self._sr3_busy = "Refining with SR3…"
        self._missing_regression = NO_REGRESSION
        self._clock = ProgressClock()
        self._last_preview_at = 0.0
        self.prompt = LongRunPrompt(ctx, self)
        """Estimates, calibration and the question before a long run."""

    # --- planning -------------------------------------------------------------------------------
    def plan(self, compare: bool, size: tuple[int, int] | None = None, preset: str | None = None) -> RunPlan | None:
        """The chosen models and options, with a new seed unless locked; None (user told) when the
        run cannot start. ``size``: the input's, checked against the output limit first. ``preset``
        replaces the chosen one (the faster preset offered before a long run)."""
        sr3 = self.models.require_sr3()
        if sr3 is None:
            return None
        if size is not None:
            try:
                check_output_size(size[0] * sr3.card.scale, size[1] * sr3.card.scale)
            except SR3Error as err:
                self.ctx.report_error("Image too large", str(err))
                return None
        try:
            return self.plan_for(sr3, compare, self.next_seed(), preset)
        except SR3Error as err:
            self.ctx.report_error("No regression model", str(err))
            return None

    def plan_for(self, sr3: ModelEntry, compare: bool, seed: int, preset: str | None = None) -> RunPlan:
        """The plan with this seed (no side effects); raises SR3Error when the chain's regression model is missing."""
        model = self.ctx.model
        options = self.refine_options(sr3.card, seed)
        if preset is not None:
            options = replace(options, preset=preset, steps=None)
        # the core's rule for the regression model an SR3 chain uses
        choice = regression_for(sr3.card, options, model.model_entries, model.settings.regression_model or None)
        # the compare panes': of the SR3 model's scale (an 8x SR3 beside a 4x regression would mislead)
        regression = choice.entry or (model.regression_entry(sr3.card.scale) if compare else None)
        onepass = model.onepass_entry() if compare else None
        return RunPlan(sr3, regression, options, choice.notes, model.output_size_choice(), onepass)

    def refine_options(self, card: ModelCard, seed: int) -> RefineOptions:
        s = self.ctx.model.settings
        # the card's default stays unnamed, so that a JPEG input runs the card's compressed preset in its place
        preset = s.preset if s.preset in card.inference_presets and s.preset != card.default_preset else None
        steps = s.custom_steps if s.preset == CUSTOM_PRESET else None
        image = self.ctx.model.image
        return RefineOptions(
            method="sr3", preset=preset, steps=steps, strength=s.strength if s.strength > 0 else None,
            texture_gain=s.detail if s.detail > 0 else None, grain=s.grain if s.grain >= 0 else None,
            seed=seed, samples=max(1, s.samples), tile=s.tile or None, preview_every=max(1, s.preview_every),
            ensemble=s.ensemble, input_quality=image.jpeg_quality if image is not None else None,
        )

    def next_seed(self) -> int:
        settings = self.ctx.model.settings
        if not settings.seed_locked:
            settings.seed = random.randint(0, MAX_SEED)
            self.ctx.view.show_seed(settings.seed)
            self.ctx.persist()
        return settings.seed

    # --- running --------------------------------------------------------------------------------
    def run(self) -> None:
        """Plan, estimate, ask first when the run is long, then start (``start``)."""
        model, view = self.ctx.model, self.ctx.view
        if self.slot.busy or self.prompt.asking:
            return
        if model.image is None:
            view.show_status("Open an image first: drop it on the window, press Ctrl+O or paste with Ctrl+V.")
            return
        compare = model.settings.auto_compare
        plan = self.plan(compare, model.image.size)
        if plan is None:
            return
        self.prompt.before_run(plan, run_methods(compare))

    def start(self, plan: RunPlan, methods: tuple[str, ...]) -> None:
        """Start the worker on the open image with ``plan`` for ``methods``."""
        model, view = self.ctx.model, self.ctx.view
        if self.slot.busy or model.image is None:
            return
        generation = model.begin_generation()
        self._methods = model.run_methods = methods
        self._notes = plan.notes
        card = plan.sr3.card
        estimate_first = plan.regression is not None and (
            card.condition == "regression" or preset_of(card, plan.options).start == "regression")
        self._sr3_busy = ("Computing the regression estimate SR3 starts from…" if estimate_first
                          else "Refining with SR3…")
        self._missing_regression = no_regression_text(model, card.scale)
        model.results.clear()
        model.metrics.clear()
        model.last_step = None
        view.clear_results(self._run_placeholders(methods, plan, self._missing_regression))
        view.show_metrics([], model.reference is not None)
        view.show_uncertainty(None, plan.options.samples)
        job = RefineJob(generation, model.image.rgb, plan.options, plan.sessions(model.settings.device),
                        self._methods, size=plan.size)
        worker = RefineWorker(job)
        worker.engine_ready.connect(self._engine_ready)
        worker.method_started.connect(self._method_started)
        worker.progress.connect(self._progress)
        worker.preview.connect(self._preview)
        worker.result.connect(self._result)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        self.slot.launch(worker, f"sr3-refine-{generation}")
        self._clock = ProgressClock()
        view.set_running(True, batch=False)
        view.show_busy("Loading the model…")

    def cancel(self) -> None:
        if self.slot.cancel():
            self.ctx.view.show_status("Cancelling…")

    def set_preview_kind(self, kind: str) -> None:
        self.ctx.model.settings.preview_kind = kind
        self.ctx.persist()
        step = self.ctx.model.last_step
        if self.slot.busy and step is not None:
            self._show_preview(step)

    @staticmethod
    def _run_placeholders(methods: tuple[str, ...], plan: RunPlan, missing: str) -> dict[str, str]:
        """The panes this run will fill. Without compare, the bicubic pane keeps the instant upsample.
        ``missing``: the regression pane's text when the plan has no regression model."""
        if "regression" not in methods:
            return {"regression": COMPARE_OFF, "onepass": COMPARE_OFF, "sr3": "Starting…"}
        absent = {"regression": missing, "onepass": NO_ONEPASS}
        panes = {m: "Computing…" if plan.entry(m) is not None else absent[m] for m in ("regression", "onepass")}
        return {"bicubic": "Computing…", **panes, "sr3": "Starting…" if "sr3" in methods else SR3_SKIPPED}

    # --- worker signals (each checks the generation) ---------------------------------------------
    def _engine_ready(self, generation: int, providers: list[str], note: str | None) -> None:
        self.ctx.show_engine(generation, providers, note)  # a slot of this QObject: called on the UI thread

    def _method_started(self, generation: int, method: str) -> None:
        if not self.ctx.model.is_current(generation):
            return
        self._method = method
        self._clock = ProgressClock()
        onepass = self.ctx.model.onepass_entry()
        label = method_label(method, onepass.name if onepass else None)
        # the busy bar's text too: until the chain's first step (after any regression estimate) it is all there is
        text = self._sr3_busy if method == "sr3" else f"Computing {label}…"
        self.ctx.view.show_busy(text)
        self.ctx.view.show_status(text)

    def _progress(self, generation: int, step: int, total: int) -> None:
        if not self.ctx.model.is_current(generation) or self._method != "sr3":
            return
        rate = self._clock.rate(step)
        self.ctx.view.show_progress(step, total, rate, ProgressClock.eta(step, total, rate), "Step")

    def _preview(self, generation: int, step: RefineStep) -> None:
        if not self.ctx.model.is_current(generation):
            return
        self.ctx.model.last_step = step
        # Turning a large preview into pixels costs the UI thread tens of ms: at most 10 per second.
        now = time.perf_counter()
        large = step.pred_y0.shape[0] * step.pred_y0.shape[1] >= LARGE_PREVIEW_PIXELS
        if large and now - self._last_preview_at < LARGE_PREVIEW_INTERVAL_S:
            return
        self._last_preview_at = now
        self._show_preview(step)

    def _show_preview(self, step: RefineStep) -> None:
        kind = self.ctx.model.settings.preview_kind
        self.ctx.view.show_preview(step.y_t if kind == "y_t" else step.pred_y0, step.step, step.total, kind)
        self.ctx.events.preview_shown.emit(step.step)

    def _result(self, generation: int, method: str, result: RefineResult) -> None:
        model, view = self.ctx.model, self.ctx.view
        if not model.is_current(generation):
            return
        model.results[method] = result
        view.show_result(method, result.image, self._caption(result))
        if method == "sr3" or (method == "regression" and "sr3" not in self._methods):
            view.show_uncertainty(result.uncertainty, model.settings.samples)
            note = "; ".join((*result.notes, *self._notes))
            view.show_status(f"Done in {result.seconds:.1f} s" + (f" ({note})" if note else "") + ". Save with Ctrl+S.")
        self.ctx.events.result_shown.emit(method)
        self.metrics.compute([method])

    def _caption(self, result: RefineResult) -> str:
        if result.method == "sr3":
            samples = self.ctx.model.settings.samples
            extra = f" · K={samples}" if samples > 1 else ""
            return f"{result.preset or 'custom'} · {result.steps} steps{extra} · {result.seconds:.1f} s"
        return f"{result.seconds:.2f} s"

    def _failed(self, generation: int, message: str) -> None:
        if self.ctx.model.is_current(generation):
            self.ctx.report_error("Refinement failed", message)

    def _finished(self, generation: int, cancelled: bool) -> None:
        model, view = self.ctx.model, self.ctx.view
        if not model.is_current(generation):
            return
        self.slot.finish()
        view.set_running(False, batch=False)
        if cancelled:
            view.show_status("Cancelled. Nothing was saved.")
            pending = {m: "Cancelled: press Run (Ctrl+Enter) to start again" for m in RESULT_METHODS
                       if m in self._methods and m not in model.results}
            view.clear_results(pending)
            model.last_step = None
        self.prompt.refresh()  # the run has refreshed the remembered speed
        self.ctx.events.run_finished.emit(cancelled)
