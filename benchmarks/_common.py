"""Shared helpers of the benchmark scripts: model files, timing, quick mode, and the RESULT line.

Every script measures its ratios inside one run (absolute times drift on shared machines) and
ends with one line per figure: ``RESULT <name> <value> target <op> <target> <ok|FAIL>``.

Quick mode (``--quick`` on any script, or ``BENCH_QUICK=1``): tiny inputs and one repeat, so that a
script ends in seconds; its RESULT lines end in ``quick`` instead of ok / FAIL (printed, not judged).
CI runs every script this way (``BENCH_QUICK=1 bash benchmarks/run_all.sh``) so that none breaks unseen.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
    from sr3_desktop.core.upscale.refine_types import RefineOptions

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"


def _bundled_dir() -> Path:
    """The app's bundled models folder (``SR3_DESKTOP_BUNDLED_DIR`` points it elsewhere, e.g. at candidate models)."""
    from sr3_desktop.core.model_files.folders import bundled_models_dir

    return bundled_models_dir()


BUNDLED = _bundled_dir()
RECIPES = {"sr3": ROOT / "recipes" / "sr3-photo-4x.toml", "regression": ROOT / "recipes" / "regression-photo-4x.toml"}
BUNDLED_NAMES = {"sr3": "sr3-photo-4x.onnx", "regression": "regression-photo-4x.onnx"}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
QUICK_ENV = "BENCH_QUICK"
T = TypeVar("T")


def _quick_mode() -> bool:
    """``--quick`` (taken out of sys.argv, so each script's own argparse never sees it) or BENCH_QUICK=1.

    The flag is put into the environment, so child processes (bench_memory's) run quick too.
    """
    if "--quick" in sys.argv[1:]:
        sys.argv.remove("--quick")
        os.environ[QUICK_ENV] = "1"
    return os.environ.get(QUICK_ENV, "").strip() not in ("", "0")


QUICK = _quick_mode()
"""Quick mode: tiny inputs, one repeat, figures printed but not judged (see the module's docstring)."""


def by_mode(full: T, quick: T) -> T:
    """``quick`` in quick mode, else ``full``: each script's sizes and repeats, in one place per script."""
    return quick if QUICK else full


def threads() -> int:
    """The thread count every benchmark uses (the app's own default: physical cores)."""
    from sr3_desktop.core.model_files.denoiser import default_threads

    return default_threads()


def _write_photos(folder: Path) -> Path:
    """A few colour photos from scikit-image (bundled with it, no network) as training data."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        target = folder / f"{name}.png"
        if not target.exists():
            Image.fromarray(getattr(skimage.data, name)()[..., :3]).save(target)
    return folder


def model_path(kind: str = "sr3", fp16: bool = False) -> Path:
    """The bundled model when it exists, else one exported once from a 1-step run of its recipe.

    Only the compute matters here, so the weights of the 1-step run do as well as trained ones:
    the architecture comes from the same recipe as the bundled model.
    """
    bundled = BUNDLED / BUNDLED_NAMES[kind]
    if bundled.is_file() and not fp16:
        return bundled
    out = CACHE / (bundled.stem + ("-fp16" if fp16 else "") + ".onnx")
    if out.is_file():
        return out
    run_dir = CACHE / f"run-{kind}"
    if not (run_dir / "checkpoint.pt").is_file():
        data = _write_photos(CACHE / "photos")
        _exporter("train", "--config", str(RECIPES[kind]), "--data", str(data), "--out", str(run_dir),
                  "--steps", "1", "--batch-size", "2", "--threads", "1")  # compute only: any weights do
    _exporter("export", str(run_dir), "-o", str(out), *(["--fp16"] if fp16 else []))
    return out


def sr3_models(options: RefineOptions | None = None, device: str = "cpu") -> tuple[OnnxDenoiser, OnnxDenoiser | None]:
    """The benchmarks' SR3 model and the regression model the app would load with it for ``options``.

    The choice is the app's one rule, ``run_models.regression_for`` (the model a card with
    ``condition = "regression"`` names in ``condition_model``, or the regression model a preset starts
    from), applied to the benchmarks' own regression model (``model_path("regression")``) as the only
    installed one, so a user's imported models never change a figure.
    """
    from sr3_desktop.core.model_files.card import read_card
    from sr3_desktop.core.model_files.denoiser import get_denoiser
    from sr3_desktop.core.model_files.registry import ModelEntry
    from sr3_desktop.core.upscale.refine_types import RefineOptions
    from sr3_desktop.core.upscale.run_models import regression_for

    sr3 = get_denoiser(model_path("sr3"), device)
    path = model_path("regression")
    card = read_card(path)
    entry = ModelEntry(card.name, path, card, bundled=path.parent == BUNDLED)
    choice = regression_for(sr3.card, options or RefineOptions(method="sr3"), [entry])
    for note in choice.notes:
        print(f"[models] {note}", file=sys.stderr, flush=True)
    return sr3, get_denoiser(choice.entry.path, device) if choice.entry is not None else None


def _exporter(*args: str) -> None:
    print(f"[setup] python -m exporter {' '.join(args)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sr3_feeds(height: int, width: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random SR3 inputs (lr_up, y_t, noise_level) at an output size."""
    rng = np.random.default_rng(seed)
    shape = (batch, 3, height, width)
    return {
        "lr_up": rng.uniform(-1, 1, shape).astype(np.float32),
        "y_t": rng.standard_normal(shape, dtype=np.float32),
        "noise_level": np.full((batch,), 0.7, dtype=np.float32),
    }


def test_lr(side: int, seed: int = 0) -> np.ndarray:
    """An HWC [0, 1] float32 low-resolution image with photo-like structure (a resized skimage photo)."""
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(photo, dtype=np.float32) / 255.0


def result(name: str, value: float, op: str, target: float, digits: int = 3) -> str:
    """The final line of a figure; ``op`` is '<=' or '>='. Quick mode marks it ``quick``: tiny inputs, not judged."""
    ok = value <= target if op == "<=" else value >= target
    verdict = "quick" if QUICK else "ok" if ok else "FAIL"
    return f"RESULT {name} {value:.{digits}f} target {op} {target:g} {verdict}"


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.python_version()}, load {load:.1f}"


def recorded_batches(denoiser: object, run: Callable[[], object]) -> list[tuple[int, ...]]:
    """The (N, C, h, w) shapes of every network call that ``run()`` makes on ``denoiser``, in order."""
    return recorded_runs([denoiser], run)[0]


def recorded_runs(denoisers: list[object], run: Callable[[], object]) -> list[list[tuple[int, ...]]]:
    """For each denoiser, the (N, C, h, w) shapes of every ``predict`` (SR3) or ``predict_image``
    (regression) call that ``run()`` makes, in order.

    Wraps the instances' methods for the duration only, so a benchmark can replay exactly the tile
    batches the pipeline sent, with a bare ``session.run``, without depending on tiling internals.
    """
    shapes: list[list[tuple[int, ...]]] = [[] for _ in denoisers]
    methods = ("predict", "predict_image")

    def recording(original: Callable[..., np.ndarray], into: list[tuple[int, ...]]) -> Callable[..., np.ndarray]:
        def record(lr_up: np.ndarray, *rest: np.ndarray) -> np.ndarray:
            into.append(tuple(lr_up.shape))  # lr_up is (N, 3, h, w) for both kinds of model
            return original(lr_up, *rest)
        return record

    for denoiser, into in zip(denoisers, shapes, strict=True):
        for method in methods:
            setattr(denoiser, method, recording(getattr(denoiser, method), into))
    try:
        run()
    finally:
        for denoiser in denoisers:
            for method in methods:
                delattr(denoiser, method)  # the class's methods again
    return shapes


def feeds_for(shapes: list[tuple[int, ...]], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random SR3 feeds of the given (N, 3, h, w) shapes."""
    rng = np.random.default_rng(seed)
    return [{"lr_up": rng.uniform(-1, 1, s).astype(np.float32), "y_t": rng.standard_normal(s, dtype=np.float32),
             "noise_level": np.full((s[0],), 0.5, dtype=np.float32)} for s in shapes]


class TimedSession:
    """Stands in front of an onnxruntime session and adds up the seconds spent inside ``run``."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.seconds = 0.0
        self.calls = 0

    def run(self, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)  # type: ignore[attr-defined]
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)


def app_session(path: str | Path | bytes, threads_: int | None = None) -> object:
    """An onnxruntime CPU session with the app's session options (OnnxDenoiser's), for any graph."""
    import onnxruntime as ort

    from sr3_desktop.core.model_files import denoiser

    make_options = getattr(denoiser, "_session_options", None)
    if make_options is not None:
        options = make_options(["CPUExecutionProvider"])
    else:  # the same settings, should the core rename its helper
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads_ is not None:
        options.intra_op_num_threads = threads_
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    On Linux it is VmHWM from /proc/self/status: ``getrusage(RUSAGE_SELF).ru_maxrss`` of a child
    process starts at its parent's RSS at fork time (it survives exec), so a benchmark that spawns
    its memory test from a big parent would read the parent's peak. Elsewhere ru_maxrss is used
    (kilobytes on Linux/BSD, bytes on macOS).
    """
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class ReplaySession(TimedSession):
    """Runs the first ``real_runs`` batches of each input shape for real, then returns copies of the last output.

    For memory benchmarks only: onnxruntime's arena holds what one run of a shape needs after its first run,
    so replaying later batches of an already-seen shape leaves the memory as it is and saves the time.
    """

    def __init__(self, session: object, real_runs: int = 2) -> None:
        super().__init__(session)
        self.real_runs = real_runs
        self.seen: dict[tuple[int, ...], list[np.ndarray]] = {}
        self.count: dict[tuple[int, ...], int] = {}

    def run(self, output_names: object, feeds: dict[str, np.ndarray], *rest: object) -> object:
        shape = tuple(next(iter(feeds.values())).shape)
        self.count[shape] = self.count.get(shape, 0) + 1
        if self.count[shape] <= self.real_runs or shape not in self.seen:
            self.seen[shape] = super().run(output_names, feeds, *rest)  # type: ignore[assignment]
            return self.seen[shape]
        return [a.copy() for a in self.seen[shape]]
