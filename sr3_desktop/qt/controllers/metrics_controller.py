"""Scores of the results (consistency always; the rest against a loaded reference, core/metrics.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sr3_desktop.core.imageio import LoadedImage, load_image
from sr3_desktop.core.metrics import consistency, detail_fidelity, gmsd, grain, psnr_y, spectral_gap, ssim_y
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.view_data import RESULT_METHODS, MetricsRow


class MetricsController:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def compute(self, methods: list[str]) -> None:
        """Score the named results off the UI thread."""
        model = self.ctx.model
        if model.image is None:
            return
        lr = model.image.rgb
        hr = model.reference.rgb if model.reference is not None else None
        outputs = {m: model.results[m].image for m in methods if m in model.results}
        if not outputs:
            return

        def job() -> list[MetricsRow]:
            rows = []
            for method, output in outputs.items():
                scale = output.shape[0] // lr.shape[0]
                row = MetricsRow(method, consistency(output, lr, scale))
                if hr is not None and hr.shape == output.shape:
                    row = replace(row, psnr=psnr_y(output, hr), ssim=ssim_y(output, hr), gmsd=gmsd(output, hr),
                                  grain=grain(output, hr), spectral_gap=spectral_gap(output, hr),
                                  detail_fidelity=detail_fidelity(output, hr))
                rows.append(row)
            return rows

        self.ctx.tasks.submit("metrics", model.generation, job)

    def load_reference(self, path: str | Path) -> None:
        model = self.ctx.model
        if model.image is None:
            self.ctx.view.show_status("Open an image first; the reference is its high-resolution original.")
            return
        self.ctx.tasks.submit("reference", model.generation, lambda: load_image(Path(path)))

    # --- task results (the dispatcher has checked the generation) ---------------------------------
    def scored(self, _token: int, rows: list[MetricsRow]) -> None:
        model = self.ctx.model
        for row in rows:
            model.metrics[row.method] = row
        ordered = [model.metrics[m] for m in RESULT_METHODS if m in model.metrics]
        self.ctx.view.show_metrics(ordered, model.reference is not None)
        self.ctx.events.metrics_ready.emit()

    def reference_loaded(self, _token: int, image: LoadedImage) -> None:
        model = self.ctx.model
        size = model.output_size()
        if size is None:
            return
        if image.size != size:
            self.ctx.report_error(
                "Reference does not match",
                f"The reference is {image.size[0]}×{image.size[1]}, but the results are {size[0]}×{size[1]}. "
                f"Load the high-resolution original of this image (the input is it shrunk {model.scale}×).")
            return
        model.reference = image
        self.ctx.view.show_reference(image.path.name)
        self.compute(list(model.results))
