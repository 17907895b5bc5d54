"""A run's plan: the models and options one run (single image or batch) uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from sr3_desktop.core.batch import OutputSize
from sr3_desktop.core.models import ModelEntry
from sr3_desktop.core.pipeline import RefineOptions


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
