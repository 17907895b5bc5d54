"""The output's size (``--scale 2|3|4``, ``--width PX`` or ``--height PX``) and what follows from it.

The model always runs at its own scale (4x for the bundled models); a smaller output is the model's
result resampled down with the shared bicubic, which antialiases when it shrinks (``resize_result``).
Consistency is then measured against the input at the chosen size (``consistency_of``), and alpha
is resized straight to it (``output_alpha``). Every step goes band by band, so an output on disk is
never held whole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.metrics import CONSISTENCY_UNIT
from sr3_desktop.core.upscale.bands import array_reader, resize_region
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, resize_bands
from sr3_desktop.core.upscale.refine_types import RefineResult

SCALE_CHOICES = (2, 3, 4)
"""What ``--scale`` and the app's Scale choice offer (up to the model's own scale)."""


@dataclass(frozen=True)
class OutputSize:
    """At most one of: an integer scale, a width or a height in pixels (the other side keeps the aspect).
    Nothing given means the model's own scale."""

    scale: int | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        given = [(name, value) for name, value in (("--scale", self.scale), ("--width", self.width),
                                                   ("--height", self.height)) if value is not None]
        if len(given) > 1:
            raise SR3Error(f"give only one of {' and '.join(name for name, _ in given)}")
        for name, value in given:
            if value < 1:
                raise SR3Error(f"{name} must be a positive number, got {value}")

    def resolve(self, width: int, height: int, model_scale: int) -> tuple[int, int]:
        """(width, height) of the output for a ``width`` x ``height`` input and a model of ``model_scale``."""
        if self.scale is not None:
            if self.scale > model_scale:
                raise SR3Error(f"--scale {self.scale} is more than the model's {model_scale}x; choose "
                               f"{', '.join(str(s) for s in SCALE_CHOICES if s <= model_scale)}")
            return width * self.scale, height * self.scale
        if self.width is not None:
            target = (self.width, max(1, round(height * self.width / width)))
            given, side, limit = "--width", width, width * model_scale
        elif self.height is not None:
            target = (max(1, round(width * self.height / height)), self.height)
            given, side, limit = "--height", height, height * model_scale
        else:
            return width * model_scale, height * model_scale
        wanted = self.width if self.width is not None else self.height
        assert wanted is not None
        if not side <= wanted <= limit:
            raise SR3Error(f"{given} {wanted} is outside what this {model_scale}x model gives for a {width}x{height} "
                           f"input: choose {side} to {limit} pixels")
        return target

    def describe(self) -> str:
        if self.scale is not None:
            return f"{self.scale}x"
        if self.width is not None:
            return f"{self.width} px wide"
        if self.height is not None:
            return f"{self.height} px high"
        return "the model's scale"


def resize_result(result: RefineResult, width: int, height: int) -> RefineResult:
    """``result`` resampled to (width, height) with the shared bicubic (antialiased when shrinking), clipped;
    the uncertainty map too. The same result when it already has that size."""
    if result.size == (width, height):
        return result
    spread = _resized(result.spread, width, height) if result.spread is not None else None
    return replace(result, output=_resized(result.output, width, height), spread=spread)


def _resized(source: OutputCanvas, width: int, height: int) -> OutputCanvas:
    shape = (height, width, *source.shape[2:])
    out = OutputCanvas(shape, on_disk=source.on_disk or None)
    for top, bottom in resize_bands((source.height, source.width), (height, width), source.on_disk):
        rows = resize_region(source.read, (source.height, source.width), (width, height), (top, bottom))
        out.write(top, np.clip(rows, 0.0, 1.0))
    return out


def output_alpha(alpha: np.ndarray, width: int, height: int) -> OutputCanvas:
    """The input's alpha resized to the output with the shared bicubic (on its own, as alpha), clipped."""
    canvas = OutputCanvas((height, width))
    read = array_reader(np.asarray(alpha, dtype=np.float32))
    for top, bottom in resize_bands(alpha.shape[:2], (height, width), canvas.on_disk):
        canvas.write(top, np.clip(resize_region(read, alpha.shape[:2], (width, height), (top, bottom)), 0.0, 1.0))
    return canvas


def consistency_of(output: OutputCanvas, lr: np.ndarray) -> float:
    """The paper's consistency at the output's own size: MSE(bicubic-downsample(output) to the input's size,
    input) in units of 1e-5 (``metrics.consistency`` for integer scales), band by band."""
    height, width = lr.shape[:2]
    total = 0.0
    for top, bottom in resize_bands((output.height, output.width), (height, width), output.on_disk):
        down = resize_region(output.read, (output.height, output.width), (width, height), (top, bottom))
        total += float(np.sum((down.astype(np.float64) - np.asarray(lr[top:bottom], dtype=np.float64)) ** 2))
    return total / lr.size / CONSISTENCY_UNIT


def uncertainty_image(spread: OutputCanvas, gain: float) -> OutputCanvas:
    """The per-pixel std as a grey RGB image: ``gain`` x std, clipped (white = a std of 1 / gain or more)."""
    out = OutputCanvas((spread.height, spread.width, 3), on_disk=spread.on_disk)
    for top, rows in spread.bands():
        grey = np.clip(rows * gain, 0.0, 1.0).astype(np.float32)
        out.write(top, np.repeat(grey[:, :, None], 3, axis=2))
    return out
