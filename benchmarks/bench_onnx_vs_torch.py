"""Figure 5: onnxruntime against PyTorch eager on the same model, weights and input (fp32, same threads).

The U-Net is built from the bundled model's recipe (recipes/sr3-photo-4x.toml), given random
non-zero weights (the exporter zero-initialises output convs, which would make the parity check
empty), exported in-process with ``exporter.export.graph_io.to_onnx`` and run with the app's session
options. Both sides see one 256² input; timings are interleaved, median of 3 each.
Target: torch time / onnxruntime time >= 1.25. Quick mode (``--quick`` / BENCH_QUICK=1): 64², one round.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from _common import RECIPES, app_session, by_mode, machine, result, sr3_feeds, threads

from exporter.config import TrainConfig, apply_overrides, load_toml
from exporter.export.export_onnx import unet_io
from exporter.export.graph_io import to_onnx
from exporter.unet import UNet

SIDE = by_mode(256, 64)
ROUNDS = by_mode(3, 1)


def recipe_unet() -> UNet:
    config = apply_overrides(TrainConfig(), load_toml(RECIPES["sr3"]))
    torch.manual_seed(0)
    model = UNet(config.unet, conditional=True).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight") and param.dim() > 1 and not param.abs().sum():
                param.normal_(0.0, 0.02)  # the zero-initialised output convs
    return model


def main() -> None:
    torch.set_num_threads(threads())
    print(f"{SIDE}², {threads()} threads (torch {torch.__version__}, {torch.get_num_threads()} threads), "
          f"{machine()}", flush=True)
    model = recipe_unet()
    session = app_session(to_onnx(model, unet_io(model)).SerializeToString())
    feeds = sr3_feeds(SIDE, SIDE)
    inputs = [torch.from_numpy(feeds[k]) for k in ("lr_up", "y_t", "noise_level")]

    def run_torch() -> np.ndarray:
        with torch.inference_mode():
            return model(*inputs).numpy()

    def run_ort() -> np.ndarray:
        return session.run(None, feeds)[0]

    reference, out = run_torch(), run_ort()  # warm-up, and the parity check
    difference = float(np.abs(reference - out).max())
    scale = float(np.abs(reference).max())
    print(f"  parity: max |torch - onnxruntime| = {difference:.2e} (outputs up to {scale:.2f})")
    assert difference <= 1e-3 * max(scale, 1.0), "onnxruntime and torch disagree: not the same model"
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for _ in range(ROUNDS):
        for name, fn in (("torch", run_torch), ("onnxruntime", run_ort)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"  {name:12s}: median {med[name]:.3f} s ({', '.join(f'{v:.3f}' for v in values)})")
    print(result("onnx_vs_torch_speedup", med["torch"] / med["onnxruntime"], ">=", 1.25, 2))


if __name__ == "__main__":
    main()
