"""A per-user cache of onnxruntime's optimised graphs: a model's later sessions skip the graph optimiser.

Building a session runs onnxruntime's graph optimisations (fusions, the CPU's blocked layouts) every
time: about a third of a CPU session's start. The first session of a model saves the optimised graph
(``SessionOptions.optimized_model_filepath``); later ones load it with the optimiser off. onnxruntime
warns that such a graph may hold this CPU's own kernels, so the key holds everything it depends on:
the model file (path, size, modification and change times, inode), the onnxruntime version and the CPU
(its architecture and, on Linux, its feature flags). Only CPU sessions of the model folders' files are
cached: an accelerator's graph may hold nodes of its provider, and a file elsewhere (a candidate on its
test run) leaves nothing behind. A cache file that fails to load is removed and rebuilt. Each load marks its
graph used (its modification time); saving a graph drops those unused for ``STALE_DAYS`` (a model deleted,
moved or replaced by an update, whose graph nothing reads again);
``SR3_ORT_CACHE=0`` turns the cache off. It lives in ``folders.cache_dir()``: the platform's user cache
folder, or ``SR3_DESKTOP_DATA_DIR/cache`` when that is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import onnxruntime as ort

from sr3_desktop.core.model_files import folders

CACHE_ENV = "SR3_ORT_CACHE"
CPU_ONLY = ["CPUExecutionProvider"]
STALE_DAYS = 30
"""A cached graph unused this long is dropped when another is saved (each is as large as its model)."""


def cache_dir() -> Path:
    """Where the optimised graphs are kept."""
    return folders.cache_dir() / "onnxruntime"


def enabled(path: Path, providers: list[str]) -> bool:
    """Whether a session of ``path`` on ``providers`` uses the cache: CPU only, a file of the model folders
    (bundled or imported: the models started again and again; never a candidate on its test run), and
    not turned off by SR3_ORT_CACHE=0."""
    if providers != CPU_ONLY or os.environ.get(CACHE_ENV, "1").strip() in ("0", "off", "no", "false"):
        return False
    return folders.in_model_folders(path)


def cached_session(path: Path, options: Callable[[], ort.SessionOptions]) -> ort.InferenceSession:
    """A CPU session of ``path`` from its cached optimised graph, or built from the model with the graph
    saved for the next one. ``options`` makes the app's session options (a fresh object per session)."""
    providers = CPU_ONLY
    plain = options()
    target = cache_path(path, str(plain.graph_optimization_level))
    if target.is_file():
        optimised = options()
        optimised.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(target), sess_options=optimised, providers=providers)
            _mark_used(target)
            return session
        except Exception:  # a damaged or foreign cache file: rebuild it from the model
            target.unlink(missing_ok=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no cache folder: an ordinary session
        return ort.InferenceSession(str(path), sess_options=plain, providers=providers)
    scratch = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # one per thread
    saving = options()
    saving.optimized_model_filepath = str(scratch)
    try:
        session = ort.InferenceSession(str(path), sess_options=saving, providers=providers)
        _store(scratch, target)
        return session
    except Exception:  # a full or read-only cache folder must cost only the saving; a bad graph
        scratch.unlink(missing_ok=True)  # fails again below, with its own message
    return ort.InferenceSession(str(path), sess_options=plain, providers=providers)


@cache
def _machine() -> str:
    """The CPU the optimised kernels were chosen for: architecture, and on Linux the feature flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags.strip()}"


def cache_path(model: Path, level: str) -> Path:
    """The cache file of ``model`` optimised at ``level``: named by the model's stem, a hash of its path
    and a key of what the optimised graph depends on, so a changed model, onnxruntime or CPU never reads
    a stale one."""
    resolved = model.resolve()
    stat = resolved.stat()
    key = "|".join(map(str, (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, ort.__version__, level,
                            _machine())))
    place = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return cache_dir() / f"{resolved.stem}-{place}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"


def _mark_used(graph: Path) -> None:
    """Set the graph's modification time to now: the cache's record of its last use."""
    with contextlib.suppress(OSError):  # a read-only cache still serves its graphs
        os.utime(graph)


def _store(scratch: Path, target: Path) -> None:
    """Move a written graph into place atomically, and drop the older graphs of the same model file and every
    graph unused for ``STALE_DAYS``."""
    if not scratch.is_file():
        return
    os.replace(scratch, target)
    same_file = target.name.rsplit("-", 1)[0]
    stale_before = time.time() - STALE_DAYS * 86400.0
    for old in target.parent.glob("*.onnx"):
        try:
            if old != target and (old.name.rsplit("-", 1)[0] == same_file or old.stat().st_mtime < stale_before):
                old.unlink()
        except OSError:  # gone already, or not ours to remove
            pass
