"""Saving the result with the core's save step: atomically, never over the input, and an existing file is
kept (the save fails and says so) unless replacing it was asked for (Save As asks). The result is SR3's, or
the regression model's when the user chose it instead of a long SR3 run."""

from __future__ import annotations

from pathlib import Path

from sr3_desktop.core.imageio import (
    DEFAULT_FORMAT,
    SAVE_FORMATS,
    LoadedImage,
    format_of_path,
    output_format,
    save_notes,
)
from sr3_desktop.core.upscale.flow import save_result
from sr3_desktop.core.upscale.refine_types import RefineResult
from sr3_desktop.qt.controllers.context import AppContext


def write_result(target: Path, result: RefineResult, source: LoadedImage, fmt: str, overwrite: bool,
                 ) -> tuple[Path, list[str]]:
    """The core's save step (alpha and metadata put back, atomic, never over the input), off the UI
    thread; returns the path written and what the format lost."""
    written = save_result(target, result, source, fmt, overwrite=overwrite)
    return written[0], save_notes(fmt, alpha=source.alpha, source=source)


class SaveController:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def savable(self) -> str | None:
        """The method whose result Save writes: "sr3", or "regression" when the run left SR3 out, else None."""
        model = self.ctx.model
        if "sr3" in model.results:
            return "sr3"
        return "regression" if "regression" in model.results and "sr3" not in model.run_methods else None

    def default_output_path(self) -> Path | None:
        """``<output folder>/<stem>_x<scale>_<method>.<format>`` for the open image."""
        model = self.ctx.model
        card = model.sr3_card()
        if model.image is None or card is None:
            return None
        stem = Path(model.image_name).stem or "image"
        kind = output_format(model.settings.output_format) or output_format(DEFAULT_FORMAT)
        assert kind is not None
        return model.settings.output_folder() / f"{stem}_x{model.scale}_{self.savable() or 'sr3'}{kind.suffix}"

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> None:
        """Save the result (to ``path``, its format from the extension; else the default path)."""
        model, view = self.ctx.model, self.ctx.view
        method = self.savable()
        result = model.results.get(method) if method else None
        if result is None or model.image is None:
            view.show_status("Nothing to save yet: run the refinement first (Ctrl+Enter).")
            return
        target = Path(path) if path else self.default_output_path()
        assert target is not None
        kind = format_of_path(target)
        if kind is None:
            names = ", ".join(f".{fmt}" for fmt in SAVE_FORMATS)
            self.ctx.report_error("Cannot save", f"{target.name}: choose a {names} file name.")
            return
        image = model.image
        view.show_status(f"Saving {target.name}…")
        self.ctx.tasks.submit("save", model.generation,
                              lambda: write_result(target, result, image, kind.name, overwrite))

    def saved(self, _token: int, value: tuple[Path, list[str]]) -> None:
        path, notes = value
        self.ctx.view.show_saved(path)
        self.ctx.view.show_status(f"Saved {path}" + (f" ({' '.join(notes)})" if notes else ""))
        self.ctx.events.saved.emit(path)
