"""The time estimate before a run, and the question before a long one.

The estimate is the core's (``core.upscale.estimate``): this machine's measured speed for the chosen models on
the chosen device, times the work of the run as the pipeline will do it. The speed is measured once
(a second or two per model, in the background) when the app starts or before the first run, and every run
refreshes it. A run estimated over ``CONSENT_SECONDS`` (two minutes) starts only when the user says
so; the question offers the fastest preset and the regression model instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.model_files.denoiser import DEVICE_LABELS, get_denoisers
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale import estimate
from sr3_desktop.core.upscale.run_models import preset_name
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.controllers.run_plan import RunPlan
from sr3_desktop.qt.dialogs import CANCEL
from sr3_desktop.qt.view_data import RESULT_METHODS


class Runs(Protocol):
    """What the prompt needs of the run controller."""

    def plan_for(self, sr3: ModelEntry, compare: bool, seed: int, preset: str | None = None) -> RunPlan: ...

    def start(self, plan: RunPlan, methods: tuple[str, ...]) -> None: ...

    def run(self) -> None: ...


def run_methods(compare: bool) -> tuple[str, ...]:
    """The methods a run computes: every result pane with compare on, else SR3 alone."""
    return RESULT_METHODS if compare else ("sr3",)


class LongRunPrompt:
    def __init__(self, ctx: AppContext, runs: Runs) -> None:
        self.ctx, self.runs = ctx, runs
        self.asking = False
        """The question is on screen: Run waits for its answer."""
        self._run_waits_for_calibration = False
        self._calibration_failed = False

    # --- estimates -------------------------------------------------------------------------------
    def estimate_of(self, plan: RunPlan, methods: Sequence[str]) -> estimate.RunEstimate:
        """The seconds of running ``methods`` on the open image with ``plan`` on the chosen device."""
        model = self.ctx.model
        assert model.image is not None
        parts = []
        for method in methods:
            owner = plan.entry(method)
            if owner is None or method == "onepass":
                continue  # bicubic costs no network time; no model, no pane; a one-pass speed is not modelled
            options = replace(plan.options, method=method)  # type: ignore[arg-type]
            parts.append(estimate.estimate(model.image.size, options, plan.sr3, plan.regression, owner.card.scale,
                                           model.settings.device))
        return estimate.combine(parts)

    def refresh(self) -> None:
        """Show the estimate of a run of the open image with the current settings (nothing in a batch)."""
        model = self.ctx.model
        sr3 = model.sr3_entry()
        if model.image is None or model.mode != "single" or sr3 is None:
            self.ctx.view.show_estimate("")
            return
        try:
            plan = self.runs.plan_for(sr3, model.settings.auto_compare, model.settings.seed)
        except SR3Error:
            self.ctx.view.show_estimate("")
            return
        self.ctx.view.show_estimate(self.describe(self.estimate_of(plan, run_methods(model.settings.auto_compare))))

    def describe(self, guess: estimate.RunEstimate) -> str:
        device = self.ctx.model.settings.device
        where = "this computer" if device == "auto" else DEVICE_LABELS.get(device, device)
        return f"{guess.text().capitalize()} on {where}" if guess.seconds is not None else \
            "Measured at the first run (a second or two, once)"

    # --- measuring this machine's speed ---------------------------------------------------------------
    def prepare(self) -> None:
        """Measure the chosen models' speed on the chosen device now, if it is not known yet (at start-up)."""
        model = self.ctx.model
        wanted = [e for e in (model.sr3_entry(), model.regression_entry()) if e is not None]
        missing = [e for e in wanted if estimate.known_speed(e.path, model.settings.device) is None]
        if missing:
            self._calibrate(missing, run_after=False)
        else:
            self.refresh()

    def _calibrate(self, models: Sequence[estimate.ModelRef], run_after: bool) -> None:
        device = self.ctx.model.settings.device
        paths = [Path(m.path) for m in models]
        if run_after:
            self._run_waits_for_calibration = True
            self.ctx.view.show_status("Measuring this computer's speed (a second or two, once)…")

        def measure() -> bool:
            estimate.ensure_speeds(get_denoisers(paths, device))
            return run_after

        self.ctx.tasks.submit("calibrate", self.ctx.model.generation, measure)

    def calibrated(self, token: int, run_after: bool) -> None:
        """A calibration task finished (on the UI thread); the run that waited for it starts now."""
        self.refresh()
        if run_after:
            self._run_waits_for_calibration = False
            if self.ctx.model.is_current(token):
                self.runs.run()

    def calibration_failed(self) -> None:
        """Without a speed the run starts without an estimate (and so without the question)."""
        self._calibration_failed = True
        if self._run_waits_for_calibration:
            self._run_waits_for_calibration = False
            self.runs.run()

    # --- before a run ----------------------------------------------------------------------------
    def before_run(self, plan: RunPlan, methods: tuple[str, ...]) -> None:
        """Start the run now, or measure the speed first, or ask first when it would be long."""
        guess = self.estimate_of(plan, methods)
        if guess.missing and not self._calibration_failed:
            self._calibrate(guess.missing, run_after=True)
            return
        self.ctx.view.show_estimate(self.describe(guess))
        if not guess.needs_consent:
            self.runs.start(plan, methods)
            return
        self._ask(plan, methods, guess)

    def _ask(self, plan: RunPlan, methods: tuple[str, ...], guess: estimate.RunEstimate) -> None:
        model = self.ctx.model
        assert model.image is not None
        card = plan.sr3.card
        chosen = preset_name(card, plan.options)
        choices = [("run", f"Run anyway ({guess.text()})")]
        others: dict[str, tuple[RunPlan, tuple[str, ...]]] = {}
        fastest = estimate.fastest_preset(card)
        if fastest is not None and (fastest != chosen or plan.options.steps is not None):
            try:
                faster = self.runs.plan_for(plan.sr3, model.settings.auto_compare, plan.options.seed, fastest)
            except SR3Error:
                pass
            else:
                others["fast"] = (faster, methods)
                choices.append(("fast", f"Use the {fastest} preset ({self.estimate_of(faster, methods).text()})"))
        regression = model.regression_entry()
        if regression is not None:
            alone = replace(plan, regression=regression)
            others["regression"] = (alone, tuple(m for m in RESULT_METHODS if m != "sr3"))
            choices.append(("regression", f"Regression only ({self.estimate_of(alone, ('regression',)).text()})"))
        width, height = model.image.size
        steps = plan.options.steps or card.preset(chosen).steps
        message = (f"{model.image_name}: {width}×{height} → {width * model.scale}×{height * model.scale}.\n"
                   f"SR3 with the {chosen if plan.options.steps is None else 'custom'} preset ({steps} steps) "
                   f"is estimated to take {guess.text()} on this computer.\n\n"
                   "Start it anyway, or choose a faster way:")
        generation = model.generation
        self.asking = True
        self.ctx.view.ask_long_run(message, choices, lambda key: self._answered(key, generation, plan, methods, others))

    def _answered(self, key: str, generation: int, plan: RunPlan, methods: tuple[str, ...],
                  others: dict[str, tuple[RunPlan, tuple[str, ...]]]) -> None:
        self.asking = False
        model = self.ctx.model
        if not model.is_current(generation) or key == CANCEL:
            self.ctx.view.show_status("Not started.")
            return
        if key == "fast":
            faster, _ = others["fast"]
            model.settings.preset = faster.options.preset or ""
            self.ctx.persist()
            self.ctx.view.show_presets(faster.sr3.card, model.settings.preset)
        self.runs.start(*others.get(key, (plan, methods)))
