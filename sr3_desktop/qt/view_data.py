"""Plain data shared by the controller and the views (no Qt widgets here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sr3_desktop.core.upscale.refine_types import METHOD_LABELS as RESULT_LABELS
from sr3_desktop.core.upscale.refine_types import METHODS

RESULT_METHODS = METHODS
"""The result panes and metrics columns, in the core's one order (bicubic, regression, one-pass, SR3)."""
METHOD_LABELS = {"input": "Input", **RESULT_LABELS}
PAPER_NOTE = "Regression usually wins PSNR; SR3 is sharper (Saharia et al.)."


@dataclass(frozen=True)
class MetricsRow:
    """Scores of one method's result; all but consistency only with a high-resolution reference."""

    method: str
    consistency: float | None
    psnr: float | None = None
    ssim: float | None = None
    gmsd: float | None = None
    grain: float | None = None
    spectral_gap: float | None = None
    detail_fidelity: float | None = None


@dataclass
class BatchItem:
    """One input of a batch and where its output goes."""

    source: Path
    output: Path
    label: str
    """The input's path relative to the dropped folder (or its file name)."""
    status: str = "pending"
    """pending / running / done / skipped / error / cancelled"""
    message: str = ""
