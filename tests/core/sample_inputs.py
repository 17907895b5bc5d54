"""Small input images shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_sample_inputs(folder: Path) -> None:
    """folder/a.png (RGB 12x10) and folder/sub/b.png (RGBA 8x8), from a fixed seed."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    Image.fromarray((rng.uniform(0, 1, (10, 12, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((rng.uniform(0, 1, (8, 8, 4)) * 255).astype(np.uint8)).save(folder / "sub" / "b.png")
