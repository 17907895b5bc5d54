"""Checkpoints: plain tensors and containers only, written atomically, read with weights_only=True.

A checkpoint is a dict of model / EMA / optimiser state dicts, ints, strings, lists and the
training config as a dict. ``torch.load(weights_only=True)`` refuses any pickled object, so a
tampered file cannot run code when it is loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio.atomic import atomic_file

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
"""The checkpoint at the best validation value of ``keep_best`` (``export RUN/best.pt``)."""
FORMAT = "sr3-exporter-checkpoint-1"
REQUIRED_KEYS = ("format", "step", "config", "model", "ema")


class CheckpointError(SR3Error):
    """A checkpoint is missing, unreadable, unsafe, or not one of ours."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` with the atomic writer: a kill mid-write keeps the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save({"format": FORMAT, **payload}, handle)
    return path


def resolve(path: str | Path) -> Path:
    """Accept a checkpoint file or a run directory holding checkpoint.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (weights_only=True); refuse pickled objects and files that are not our checkpoints."""
    path = resolve(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, which could run code "
            f"({str(err).splitlines()[0][:200]}). Only checkpoints written by `python -m exporter train` load."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an SR3 exporter checkpoint (format {FORMAT!r} expected)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return data
