"""The model list: installed models (bundled and imported), the chosen SR3 and regression models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sr3_desktop.core.model_files import registry as models
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale.refine_types import method_label
from sr3_desktop.qt.controllers.context import AppContext


class ModelController:
    """Lists and imports models off the UI thread; ``scale_changed`` runs when the frame must change."""

    def __init__(self, ctx: AppContext, scale_changed: Callable[[], None]) -> None:
        self.ctx = ctx
        self._scale_changed = scale_changed

    def refresh(self) -> None:
        self.ctx.tasks.submit("models", 0, models.list_models)

    def select(self, kind: str, name: str) -> None:
        model, view = self.ctx.model, self.ctx.view
        if kind == "sr3":
            model.settings.sr3_model = name
            view.show_presets(model.sr3_card(), model.settings.preset)
            self._check_scale()
        else:
            model.settings.regression_model = name
        self.ctx.persist()

    def import_model(self, path: str | Path) -> None:
        self.ctx.view.show_status(f"Checking {Path(path).name}…")
        self.ctx.tasks.submit("import", 0, lambda: models.import_model(Path(path)))

    def require_sr3(self) -> ModelEntry | None:
        """The chosen SR3 model; without one, the user is told how to get one."""
        entry = self.ctx.model.sr3_entry()
        if entry is None:
            self.ctx.report_error("No SR3 model", "No SR3 model is installed yet. Import an exported .onnx model "
                                                  "with Models ▸ Import model…")
        return entry

    # --- task results ---------------------------------------------------------------------------
    def listed(self, _token: int, entries: list[ModelEntry]) -> None:
        model, view = self.ctx.model, self.ctx.view
        model.model_entries = list(entries)
        sr3, regression = model.sr3_entry(), model.regression_entry()
        view.show_models(model.model_entries, sr3.name if sr3 else "", regression.name if regression else "")
        view.show_presets(sr3.card if sr3 else None, model.settings.preset)
        onepass = model.onepass_entry()
        view.show_method_title("onepass", method_label("onepass", onepass.name if onepass else None))
        self._check_scale()  # the image may have arrived before the model list
        if sr3 is None:
            view.show_status("No SR3 model installed: import one with Models ▸ Import model…")
        self.ctx.events.models_changed.emit()

    def imported(self, _token: int, entry: ModelEntry) -> None:
        settings = self.ctx.model.settings
        if entry.card.kind == "sr3":
            settings.sr3_model = entry.name
        elif entry.card.kind == "regression":
            settings.regression_model = entry.name  # a one-pass model needs no choice: it has its own pane
        self.ctx.persist()
        self.ctx.view.show_status(f"Imported {entry.name} ({entry.card.kind}, ×{entry.card.scale}).")
        self.refresh()

    def _check_scale(self) -> None:
        model = self.ctx.model
        if model.image is not None and model.sr3_entry() is not None and model.output_scale() != model.scale:
            self._scale_changed()
