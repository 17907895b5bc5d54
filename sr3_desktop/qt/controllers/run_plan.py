"""A run's plan: the models and options one run (single image or batch) uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale.output_size import OutputSize
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.qt.abortable_worker import RunSessions


@dataclass(frozen=True)
class RunPlan:
    """What a run (single or batch) uses: the models and the options, with this run's seed."""

    sr3: ModelEntry
    regression: ModelEntry | None
    options: RefineOptions
    notes: tuple[str, ...] = ()
    """What the user should know about the model choice (a stand-in regression model, ...)."""
    size: OutputSize = field(default_factory=OutputSize)
    """The results' size (the Scale setting)."""
    onepass: ModelEntry | None = None
    """The imported one-pass upscaler of the compare's own pane (of the SR3 model's scale), if any."""

    def entry(self, method: str) -> ModelEntry | None:
        """The model that runs ``method`` (None for bicubic, or when there is none)."""
        return {"sr3": self.sr3, "regression": self.regression, "onepass": self.onepass}.get(method)

    def sessions(self, device: str) -> RunSessions:
        """The model files this plan's worker opens, on ``device`` (the one-pass one too, when there is one)."""
        return RunSessions(Path(self.sr3.path), Path(self.regression.path) if self.regression else None, device,
                           Path(self.onepass.path) if self.onepass else None)
