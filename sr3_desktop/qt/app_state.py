"""The app's state (the model of ndv's model / view / controller split). No Qt, no work, no I/O.

Controllers read and write it; views never see it. ``generation`` counts what the user is looking
at: every load, clear, run and batch begins a new one (``begin_generation``, the only place it
moves), and results of background work tagged with an older one are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sr3_desktop.core.imageio import LoadedImage
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry, default_model
from sr3_desktop.core.upscale.output_size import OutputSize
from sr3_desktop.core.upscale.refine_types import RefineResult, RefineStep
from sr3_desktop.qt.settings import AppSettings
from sr3_desktop.qt.view_data import BatchItem, MetricsRow

Mode = Literal["empty", "single", "batch"]
DEFAULT_SCALE = 4
"""The frame's scale while no SR3 model is installed."""


@dataclass
class BatchState:
    """The files of a batch and the items planned for them."""

    sources: list[Path] = field(default_factory=list)
    items: list[BatchItem] = field(default_factory=list)
    key: tuple[str, str] | None = None
    """(output folder, format) the items were planned for."""
    run_when_planned: bool = False


class AppModel:
    """Everything the app knows: settings, the open image or batch, results, metrics, models."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.mode: Mode = "empty"
        self.image: LoadedImage | None = None
        self.image_name = ""
        self.scale = DEFAULT_SCALE
        """The results' scale when the image was shown (``output_scale``): the frame is ``scale`` x the input."""
        self.results: dict[str, RefineResult] = {}
        self.metrics: dict[str, MetricsRow] = {}
        self.reference: LoadedImage | None = None
        self.last_step: RefineStep | None = None
        self.run_methods: tuple[str, ...] = ()
        """The methods the last run computed (without "sr3" when the user chose regression instead)."""
        self.model_entries: list[ModelEntry] = []
        self.batch = BatchState()
        self._generation = 0
        self._on_new_generation: list[Callable[[int], None]] = []

    # --- the generation counter -------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def begin_generation(self) -> int:
        """Leave everything of the current generation behind; returns the new one.

        Listeners (the run slot) hear of it first, so a run still going is stopped."""
        for listener in self._on_new_generation:
            listener(self._generation)
        self._generation += 1
        return self._generation

    def is_current(self, generation: int) -> bool:
        return generation == self._generation

    def on_new_generation(self, listener: Callable[[int], None]) -> None:
        """``listener(old_generation)`` runs at every ``begin_generation``."""
        self._on_new_generation.append(listener)

    # --- models -----------------------------------------------------------------------------------
    def sr3_entry(self) -> ModelEntry | None:
        return self._entry("sr3", self.settings.sr3_model)

    def regression_entry(self, scale: int | None = None) -> ModelEntry | None:
        """The chosen (else the default) regression model; of ``scale`` only, when given."""
        return self._entry("regression", self.settings.regression_model, scale)

    def onepass_entry(self) -> ModelEntry | None:
        """The imported one-pass upscaler of the compare's own pane: the first of the SR3 model's scale."""
        return next((e for e in self.model_entries if e.card.kind == "onepass" and e.card.scale == self.model_scale()),
                    None)

    def _entry(self, kind: str, name: str, scale: int | None = None) -> ModelEntry | None:
        """The named model of ``kind`` (and ``scale``, when given), else the core's default one."""
        candidates = [e for e in self.model_entries if e.card.kind == kind and scale in (None, e.card.scale)]
        for entry in candidates:
            if entry.name == name:
                return entry
        return default_model(kind, candidates)

    def sr3_card(self) -> ModelCard | None:
        entry = self.sr3_entry()
        return entry.card if entry else None

    def model_scale(self) -> int:
        """The chosen SR3 model's scale (``DEFAULT_SCALE`` without one)."""
        card = self.sr3_card()
        return card.scale if card else DEFAULT_SCALE

    def output_scale(self) -> int:
        """The results' scale: the Scale setting when the model reaches it, else the model's own."""
        chosen, native = self.settings.output_scale, self.model_scale()
        return chosen if 1 <= chosen <= native else native

    def output_size_choice(self) -> OutputSize:
        """The core's output size for runs of the open image (and the batch)."""
        return OutputSize(scale=self.output_scale())

    # --- the open image ---------------------------------------------------------------------------
    def open_image(self, image: LoadedImage, name: str) -> None:
        """A new single image: its results, metrics and reference start empty."""
        self.mode = "single"
        self.image, self.image_name = image, name
        self.scale = self.output_scale()
        self.results.clear()
        self.metrics.clear()
        self.reference, self.last_step = None, None

    def forget_image(self) -> None:
        """Drop the single image, its results, metrics and reference."""
        self.image, self.reference, self.last_step = None, None, None
        self.results.clear()
        self.metrics.clear()

    def output_size(self) -> tuple[int, int] | None:
        """(width, height) of the results for the open image."""
        if self.image is None:
            return None
        return self.image.size[0] * self.scale, self.image.size[1] * self.scale
