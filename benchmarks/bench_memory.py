"""Peak memory (RSS) against output size (issue 11): memory bounded by the tile and the band, not the image.

Each figure is the whole command a user runs, ``python -m sr3_desktop upscale photo.jpg --out-dir DIR
--method M`` (``cli.main`` in a fresh child process, its VmHWM; see ``_common.peak_rss_bytes``), on JPEG
photos whose 4x output is 16, 25.6, 48 and 90 MP, with the bundled models, writing PNG. The regression
model's first two tile runs per shape are real and later ones replay a copy of the last output
(``_common.ReplaySession``: onnxruntime's arena already holds what a tile needs, so memory is the same
and the run takes a minute instead of ten; ``--full`` runs every tile). Everything else (decoding, the
bicubic condition of every tile, blending, the output canvas on disk, the PNG stream) is real.

Figures (targets from issue 11):
  memory_rss_gb_regression_1600x1000   <= 1.5 GB   (25.6 MP out)
  memory_rss_gb_bicubic_3000x1875      <= 2 GB     (90 MP out)
  memory_rss_gb_regression_3000x1875   <= 2 GB
  memory_rss_flat_<method>             max / min over 16 -> 90 MP <= 1.15
  memory_rss_gb_sr3_4096               SR3 (the card's default preset), 1024² -> 4096², <= 3 GB, with the
                                       regression model the app loads with it (``_common.sr3_models``);
                                       replayed like regression (``--full``: every step real)
Quick mode (``--quick`` / BENCH_QUICK=1): inputs of 64x64, 96x64 and 128x96, SR3 64² -> 256²; the names follow.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ReplaySession, by_mode, machine, model_path, peak_rss_bytes, result, sr3_models, test_lr

INPUTS = by_mode(((1000, 1000), (1600, 1000), (2000, 1500), (3000, 1875)), ((64, 64), (96, 64), (128, 96)))
"""Input sizes: 4x outputs of 16, 25.6, 48 and 90 MP."""
METHODS = ("bicubic", "regression")
SR3_SIDE = by_mode(1024, 64)
"""The SR3 run's input side (-> 4096² output)."""


def write_photo(path: Path, width: int, height: int) -> Path:
    """A photo-like JPEG: a mosaic of scikit-image's photos, resized (no network, no extra files)."""
    import skimage.data
    from PIL import Image

    photos = [Image.fromarray(getattr(skimage.data, n)()[..., :3]) for n in ("astronaut", "coffee", "chelsea")]
    canvas = Image.new("RGB", (width, height))
    cell_w, cell_h = max(1, width // 3), max(1, height // 3)
    for i in range(3):
        for j in range(3):
            cell = photos[(i + j) % 3].resize((cell_w, cell_h), Image.Resampling.LANCZOS)
            canvas.paste(cell, (j * cell_w, i * cell_h))
    canvas.save(path, quality=90)
    return path


def cli_child(method: str, photo: str, out_dir: str, full: bool) -> None:
    """One ``upscale`` command in this fresh process; prints its peak RSS."""
    from sr3_desktop import cli
    from sr3_desktop.core.model_files.denoiser import get_denoiser

    replay = None
    if method != "bicubic" and not full:
        model = get_denoiser(model_path(method), "auto")  # the very session the CLI will take from the cache
        replay = ReplaySession(model._session)
        model._session = replay  # type: ignore[assignment]
    started = time.perf_counter()
    err = io.StringIO()
    code = cli.main(["upscale", photo, "--out-dir", out_dir, "--method", method, "--quiet"], io.StringIO(), err)
    seconds = time.perf_counter() - started
    assert code == 0, err.getvalue()
    runs = sum(replay.count.values()) if replay else 0
    real = sum(min(n, replay.real_runs) for n in replay.count.values()) if replay else 0
    print(f"CHILD peak_rss_bytes {peak_rss_bytes()} seconds {seconds:.1f} runs {runs} real {real}", flush=True)


def sr3_child(full: bool) -> None:
    """SR3 with the card's default preset (what a user runs), 1024² -> 4096² (planes on disk, memmapped),
    through ``pipeline.refine``, with the regression model the app loads with the SR3 model.

    Not a preset cut to N steps: a preset whose noise levels all equal one another (a 1-step one with
    sigma_start == sigma_end) cannot be rebuilt with more steps."""
    from sr3_desktop.core.upscale.pipeline import refine
    from sr3_desktop.core.upscale.refine_types import RefineOptions

    options = RefineOptions(method="sr3", seed=0)
    sr3, regression = sr3_models(options)
    models = [sr3, *([regression] if regression else [])]
    replays = [] if full else [ReplaySession(m._session) for m in models]
    for model, replay in zip(models, replays, strict=False):
        model._session = replay  # type: ignore[assignment]
    started = time.perf_counter()
    final = None
    for step in refine(test_lr(SR3_SIDE), options, sr3, regression):
        final = step.result or final
    assert final is not None and final.size == (4 * SR3_SIDE, 4 * SR3_SIDE)
    runs = sum(sum(r.count.values()) for r in replays)
    real = sum(min(n, r.real_runs) for r in replays for n in r.count.values()) if replays else 0
    print(f"CHILD peak_rss_bytes {peak_rss_bytes()} seconds {time.perf_counter() - started:.1f} runs {runs} "
          f"real {real}", flush=True)


def child(args: list[str], data: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", *args]
    environment = {**os.environ, "SR3_DESKTOP_DATA_DIR": str(data)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-2000:]}")
    fields = next(line for line in done.stdout.splitlines() if line.startswith("CHILD ")).split()[1:]
    return {fields[i]: float(fields[i + 1]) for i in range(0, len(fields), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help="run every tile of the models for real (slow)")
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "sr3":
            sr3_child(args.full)
        else:
            cli_child(args.child[0], args.child[1], args.child[2], args.full)
        return
    how = "all tiles real" if args.full else "regression: 2 real tile runs per shape, then replayed"
    print(f"bundled models, whole CLI command per child process, PNG out ({how}); {machine()}", flush=True)
    peaks: dict[str, dict[tuple[int, int], float]] = {m: {} for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="sr3-bench-memory-") as tmp:
        root = Path(tmp)
        for width, height in INPUTS:
            photo = write_photo(root / f"photo-{width}x{height}.jpg", width, height)
            for method in METHODS:
                out = root / f"out-{method}-{width}x{height}"
                got = child([method, str(photo), str(out), *(["--full"] if args.full else [])], root / "data")
                with open(out / f"{photo.stem}.png", "rb") as written:  # the PNG header: its size
                    header = written.read(24)
                size = (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big"))
                assert size == (4 * width, 4 * height), size
                peaks[method][(width, height)] = got["peak_rss_bytes"] / 1e9
                print(f"  {method:10s} {width}x{height} -> {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:5.1f} MP): "
                      f"peak RSS {got['peak_rss_bytes'] / 1e9:.2f} GB, {got['seconds']:.0f} s, "
                      f"{int(got['runs'])} network runs ({int(got['real'])} real)", flush=True)
                (out / f"{photo.stem}.png").unlink()
        sr3 = child(["sr3", *(["--full"] if args.full else [])], root / "data")
        print(f"  sr3 default preset, {SR3_SIDE}² -> {4 * SR3_SIDE}²: peak RSS {sr3['peak_rss_bytes'] / 1e9:.2f} GB, "
              f"{sr3['seconds']:.0f} s, {int(sr3['runs'])} network runs", flush=True)
    second, largest = INPUTS[1], INPUTS[-1]
    print(result(f"memory_rss_gb_regression_{second[0]}x{second[1]}", peaks["regression"][second], "<=", 1.5, 2))
    for method in METHODS:
        print(result(f"memory_rss_gb_{method}_{largest[0]}x{largest[1]}", peaks[method][largest], "<=", 2.0, 2))
    span = f"{16 * INPUTS[0][0] * INPUTS[0][1] / 1e6:.2g}_to_{16 * largest[0] * largest[1] / 1e6:.2g}mp"
    for method in METHODS:
        values = peaks[method].values()
        print(result(f"memory_rss_flat_{method}_{span}", max(values) / min(values), "<=", 1.15))
    print(result(f"memory_rss_gb_sr3_{4 * SR3_SIDE}", sr3["peak_rss_bytes"] / 1e9, "<=", 3.0, 2))


if __name__ == "__main__":
    main()
