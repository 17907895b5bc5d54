"""What the controllers need of the window. Controller tests use ``MagicMock(spec=View)`` (as ndv does)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from sr3_desktop.core.imageio import LoadedImage
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.qt.view_data import BatchItem, MetricsRow


class View(Protocol):
    """The window's side of the conversation; every method only displays. MainWindow implements it."""

    def show_loading(self, name: str) -> None:
        """An image is being decoded."""
        ...

    def show_image(self, image: LoadedImage, name: str, scale: int) -> None:
        """A new input, on screen at once: the frame is ``scale`` x its size; the input pane shows it
        nearest-neighbour, and so does every result pane until it has an image of its own."""
        ...

    def show_bicubic(self, image: np.ndarray, caption: str) -> None:
        """The instant bicubic upsample of a just-opened image, before any run."""
        ...

    def show_empty(self) -> None:
        """Back to the drop zone."""
        ...

    def show_batch(self, items: list[BatchItem], output_folder: str) -> None:
        ...

    def update_batch_item(self, index: int, item: BatchItem) -> None:
        ...

    def show_batch_summary(self, text: str) -> None:
        ...

    def set_running(self, running: bool, batch: bool) -> None:
        ...

    def show_progress(self, step: int, total: int, rate: float | None, eta: float | None, label: str) -> None:
        ...

    def show_busy(self, text: str) -> None:
        """Indeterminate progress (loading a model, starting)."""
        ...

    def show_preview(self, image: np.ndarray, step: int, total: int, kind: str) -> None:
        """A live preview of the SR3 chain: ``kind`` is "pred_y0" or "y_t"."""
        ...

    def show_result(self, method: str, image: np.ndarray, caption: str) -> None:
        ...

    def clear_results(self, placeholders: dict[str, str]) -> None:
        """Empty the result panes, each showing its placeholder text."""
        ...

    def show_metrics(self, rows: list[MetricsRow], has_reference: bool) -> None:
        ...

    def show_reference(self, name: str | None) -> None:
        ...

    def show_uncertainty(self, std: np.ndarray | None, samples: int) -> None:
        ...

    def show_engine(self, providers: list[str], note: str | None) -> None:
        """The execution provider that really runs (``providers[0]``) and any fallback note."""
        ...

    def show_status(self, text: str) -> None:
        ...

    def show_error(self, title: str, message: str) -> None:
        ...

    def show_saved(self, path: Path) -> None:
        ...

    def show_models(self, entries: list[ModelEntry], sr3: str, regression: str) -> None:
        ...

    def show_method_title(self, method: str, title: str) -> None:
        """Name a method's compare pane and metrics column (the one-pass pane: after its model)."""
        ...

    def show_presets(self, card: ModelCard | None, preset: str) -> None:
        ...

    def show_seed(self, seed: int) -> None:
        ...

    def show_estimate(self, text: str) -> None:
        """How long a run of the open image with the current settings should take (or why it is unknown)."""
        ...

    def ask_long_run(self, message: str, choices: list[tuple[str, str]], answer: Callable[[str], None]) -> None:
        """Ask before a long run; ``answer(key)`` gets the chosen key (``dialogs.CANCEL`` when dismissed)."""
        ...

    def show_recent(self, paths: list[str]) -> None:
        ...
