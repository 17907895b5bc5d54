"""OnnxDenoiser: one onnxruntime session per model and device, checked against the model card.

The file is checked by ``model_safety`` before any session exists; the card is read from the
session's metadata and the graph's real inputs and outputs must match it. Execution providers
are tried in the order CUDA -> DirectML -> CoreML -> CPU. onnxruntime silently drops a provider
whose libraries are missing, so the providers actually in use are read back and a
``fallback_note`` says when the session ended up on the CPU.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files import session_cache
from sr3_desktop.core.model_files.card import ModelCard, card_from_metadata
from sr3_desktop.core.model_files.safety import check_onnx_file

DEVICES = ("auto", "cpu", "cuda", "directml", "coreml")
PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
IO_BINDING_DEVICES = {PROVIDERS["cuda"]: "cuda", PROVIDERS["cpu"]: "cpu"}
"""The device name onnxruntime's IO binding takes for the memory of each provider that supports it."""
DEVICE_LABELS = {"cuda": "CUDA", "directml": "DirectML", "coreml": "CoreML", "cpu": "CPU"}
AUTO_ORDER = ("cuda", "directml", "coreml")
CPU_BUDGET_PIXELS = 512 * 512
GPU_BUDGET_PIXELS = 1024 * 1024
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def default_threads() -> int:
    """Intra-op threads: SR3_THREADS, else the physical cores (logical / 2 when hyper-threaded)."""
    override = os.environ.get("SR3_THREADS", "").strip()
    if override:
        try:
            value = int(override)
        except ValueError:
            raise SR3Error(f"SR3_THREADS must be a whole number, got {override!r}") from None
        return max(1, value)
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, logical // 2) if logical >= 4 else logical


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (Linux); elsewhere we cannot tell cheaply, so assume it may be."""
    if sys.platform != "linux":
        return True
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def plan_providers(
    device: str, available: list[str], nvidia_present: bool | None = None
) -> tuple[list[str], str | None]:
    """Providers to ask onnxruntime for, and a note when the request cannot be met at all.

    ``auto`` skips CUDA on a Linux machine without an NVIDIA driver: onnxruntime-gpu is installed
    everywhere on x86-64, and a machine with no GPU should not be told its CUDA failed."""
    if device not in DEVICES:
        raise SR3Error(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [PROVIDERS["cpu"]], None
    if device == "auto":
        gpu = nvidia_driver_present() if nvidia_present is None else nvidia_present
        wanted = [PROVIDERS[d] for d in AUTO_ORDER if PROVIDERS[d] in available and (gpu or d != "cuda")]
        return [*wanted, PROVIDERS["cpu"]], None
    if PROVIDERS[device] not in available:
        label = DEVICE_LABELS[device]
        note = f"{label} was requested but this onnxruntime build has no {label} support: running on CPU"
        return [PROVIDERS["cpu"]], note
    return [PROVIDERS[device], PROVIDERS["cpu"]], None


def fallback_note_for(requested: list[str], active: list[str]) -> str | None:
    """Say so when the accelerator asked for did not make it into the session."""
    accelerators = [p for p in requested if p != PROVIDERS["cpu"]]
    if not accelerators or accelerators[0] in active:
        return None
    label = next(DEVICE_LABELS[d] for d, p in PROVIDERS.items() if p == accelerators[0])
    hint = " (CUDA or cuDNN libraries missing?)" if label == "CUDA" else ""
    return f"{label} is available in this onnxruntime build but could not be started{hint}: running on CPU"


def _session_options(providers: list[str]) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = True  # off is 1.07-1.19x slower (benchmarks/README.md)
    # The memory pattern pre-plans one block per input shape: on the CPU it saves no time but holds
    # ~0.5 GB more per 512² tile; DirectML cannot use it at all. Kept for CUDA and CoreML (not measured).
    options.enable_mem_pattern = providers[0] in (PROVIDERS["cuda"], PROVIDERS["coreml"])
    # Idle workers sleep instead of spinning: a desktop app shares its cores with the GUI and other
    # programs, and spinning workers lose time slices (0.68-0.77x the step time under load).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def create_session(path: Path, providers: list[str]) -> ort.InferenceSession:
    """An onnxruntime session with the app's options (threads, no spinning); ``ModelError`` if it fails.

    A CPU session loads the graph that onnxruntime optimised for an earlier session of the same file,
    when the cache holds it (``session_cache``), and otherwise saves it there for the next one."""
    # A provider whose libraries are missing logs a long error; we report our own note instead.
    quiet = not os.environ.get("SR3_ORT_VERBOSE")
    ort.set_default_logger_severity(4 if quiet else 2)
    try:
        if session_cache.enabled(path, providers):
            return session_cache.cached_session(path, lambda: _session_options(providers))
        return ort.InferenceSession(str(path), sess_options=_session_options(providers), providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for bad graphs
        raise ModelError(f"{path.name} could not be loaded by onnxruntime: {_short(err)}") from None
    finally:
        ort.set_default_logger_severity(3)


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_values(kind: str, values: list[Any], names: tuple[str, ...], model: str) -> dict[str, np.dtype]:
    """Names, ranks and element types (float32 or float16) of the graph's inputs or outputs."""
    found = [v.name for v in values]
    if sorted(found) != sorted(names):
        missing = [n for n in names if n not in found]
        extra = [n for n in found if n not in names]
        raise ModelError(
            f"{model}: the graph's {kind} {found} do not match its model card {list(names)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    dtypes = {}
    for value in values:
        rank = 1 if value.name == "noise_level" else 4
        if len(value.shape) != rank:
            raise ModelError(f"{model}: {kind[:-1]} '{value.name}' has rank {len(value.shape)}, expected {rank}")
        if value.type not in _ORT_TYPES:
            raise ModelError(f"{model}: {kind[:-1]} '{value.name}' is {value.type}, expected float32 or float16")
        if rank == 4 and isinstance(value.shape[1], int) and value.shape[1] != 3:
            raise ModelError(f"{model}: {kind[:-1]} '{value.name}' has {value.shape[1]} channels, expected 3 (RGB)")
        dtypes[value.name] = np.dtype(_ORT_TYPES[value.type])
    return dtypes


class OnnxDenoiser:
    """An SR3 denoiser, a regression model or a one-pass upscaler behind one onnxruntime session.

    ``card`` is given only for a one-pass file without a card of its own: the card its test run made
    (``core.model_files.onepass_probe``); every other model is judged by the card it carries."""

    def __init__(self, path: str | Path, device: str = "auto", card: ModelCard | None = None,
                 io_binding: bool | None = None) -> None:
        """``io_binding``: bind inputs and output in the provider's memory (None: on CUDA only, where it
        saves copies; the CPU provider supports it too, which is how the tests run it everywhere)."""
        given = Path(path).expanduser()
        if not given.is_file():
            raise ModelError(f"model file not found: {path}")
        check_onnx_file(given)  # on the path as given, so its link checks see what the user named
        self.path = given.resolve()
        self.requested_device = device
        requested, note = plan_providers(device, ort.get_available_providers())
        self._session = create_session(self.path, requested)
        self.providers: list[str] = list(self._session.get_providers())
        self.fallback_note: str | None = note or fallback_note_for(requested, self.providers)
        metadata = self._session.get_modelmeta().custom_metadata_map
        name = self.path.name
        self.card: ModelCard = card if card is not None else card_from_metadata(dict(metadata), name)
        self._dtypes = _check_values("inputs", self._session.get_inputs(), self.card.inputs, name)
        _check_values("outputs", self._session.get_outputs(), self.card.outputs, name)
        self._io_device = _binding_device(self.providers[0], io_binding)
        self.run_options: ort.RunOptions | None = None
        """Passed to every run; model_probe's watchdog stops a test run through its ``terminate``."""

    # --- facts ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.card.kind

    @property
    def on_accelerator(self) -> bool:
        return self.providers[0] != PROVIDERS["cpu"]

    @property
    def budget_pixels(self) -> int:
        """Pixels per session run that fit comfortably in memory on this device."""
        return GPU_BUDGET_PIXELS if self.on_accelerator else CPU_BUDGET_PIXELS

    @property
    def input_dtypes(self) -> dict[str, np.dtype]:
        """Element type of each graph input; float16 inputs are cast from float32 on the way in."""
        return dict(self._dtypes)

    @property
    def uses_io_binding(self) -> bool:
        return self._io_device is not None

    def describe(self) -> str:
        """e.g. 'sr3-photo-4x on CUDAExecutionProvider'."""
        return f"{self.card.name} on {self.providers[0]}"

    # --- running -------------------------------------------------------------------------
    def predict(self, lr_up: np.ndarray, y_t: np.ndarray, noise_level: np.ndarray) -> np.ndarray:
        """SR3: the network's prediction for NCHW lr_up and y_t, float32: eps, x0 or v, as the card's
        ``prediction`` says. ``noise_level`` is the network input (gamma or sqrt(gamma), per the card's
        ``noise_conditioning``; see ``sampler.network_input``), one value or one per batch item."""
        if self.card.kind != "sr3":
            raise ModelError(f"{self.card.name} is a {self.card.kind} model, not an SR3 denoiser")
        names = self.card.inputs
        level = np.asarray(noise_level, dtype=np.float32).reshape(-1)
        if level.size == 1 and y_t.shape[0] != 1:
            level = np.full((y_t.shape[0],), level[0], dtype=np.float32)
        return self._run({names[0]: lr_up, names[1]: y_t, names[2]: level}, y_t.shape)

    def predict_image(self, lr_up: np.ndarray) -> np.ndarray:
        """Regression: the predicted HR (or residual, per the card) for NCHW lr_up, float32."""
        if self.card.kind != "regression":
            raise ModelError(f"{self.card.name} is an {self.card.kind} model, not a regression model")
        return self._run({self.card.inputs[0]: lr_up}, lr_up.shape)

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        """One-pass: the NCHW image at ``scale`` times the size of ``lr`` (the LR image, in the card's value_range)."""
        if self.card.kind != "onepass":
            raise ModelError(f"{self.card.name} is a {self.card.kind} model, not a one-pass upscaler")
        n, c, h, w = lr.shape
        s = self.card.scale
        return self._run({self.card.inputs[0]: lr}, (n, c, h * s, w * s))

    def _run(self, feeds: dict[str, np.ndarray], expected: tuple[int, ...]) -> np.ndarray:
        cast = {k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in feeds.items()}
        try:
            out = (self._run_io_binding(cast, self._io_device) if self._io_device is not None
                   else self._session.run(None, cast, self.run_options)[0])
        except Exception as err:  # onnxruntime errors (out of memory, bad shapes) become user messages
            raise ModelError(
                f"{self.card.name} ({self.path.name}) failed to run on {self.providers[0]}: {_short(err)}. "
                "A smaller tile (--tile) needs less memory."
            ) from None
        if out.shape != tuple(expected):
            raise ModelError(
                f"{self.card.name} ({self.path.name}) returned an output of shape {list(out.shape)} for an input "
                f"of shape {list(expected)}; the model does not match its card"
            )
        return np.asarray(out, dtype=np.float32)

    def _run_io_binding(self, feeds: dict[str, np.ndarray], device: str) -> np.ndarray:
        """Copy the inputs to ``device`` once and let onnxruntime allocate the output there; a fresh
        binding each run, so nothing of one run is seen by the next."""
        binding = self._session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
        binding.bind_output(self.card.outputs[0], device)
        self._session.run_with_iobinding(binding, self.run_options)
        return np.asarray(binding.copy_outputs_to_cpu()[0])


def _binding_device(provider: str, wanted: bool | None) -> str | None:
    """onnxruntime's device name for IO binding on ``provider``, or None for plain runs."""
    if wanted is None:
        wanted = provider == PROVIDERS["cuda"]
    device = IO_BINDING_DEVICES.get(provider)
    if wanted and device is None:
        raise ModelError(f"IO binding is not supported on {provider}")
    return device if wanted else None


_CACHE: OrderedDict[tuple[str, int, str, str], OnnxDenoiser] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def get_denoiser(path: str | Path, device: str = "auto", card: ModelCard | None = None) -> OnnxDenoiser:
    """A cached OnnxDenoiser per (resolved path, modification time, device); ``card``: see OnnxDenoiser.
    A session is built outside the cache's lock, so that two can be built at once (``get_denoisers``)."""
    key = _cache_key(path, device, card)
    resolved = Path(key[0])
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    built = OnnxDenoiser(resolved, device, card)
    with _CACHE_LOCK:
        denoiser = _CACHE.setdefault(key, built)  # a session another thread built meanwhile wins
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return denoiser


def get_denoisers(paths: Sequence[str | Path], device: str = "auto") -> list[OnnxDenoiser]:
    """``get_denoiser`` of each path, in order, the sessions not yet cached built side by side: onnxruntime
    optimises a graph mostly outside the GIL, so an SR3 run's two sessions take 0.18-0.22 s instead of
    0.21-0.32 s. Threads start only when two or more are missing (a run's cached sessions start none)."""
    if sum(not _is_cached(p, device) for p in paths) < 2:
        return [get_denoiser(p, device) for p in paths]
    with ThreadPoolExecutor(len(paths), thread_name_prefix="sr3-session") as pool:
        return list(pool.map(lambda p: get_denoiser(p, device), paths))


def _cache_key(path: str | Path, device: str, card: ModelCard | None = None) -> tuple[str, int, str, str]:
    """(resolved path, modification time, device, card): ``ModelError`` if the file is missing."""
    resolved = Path(path).expanduser().resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError:
        raise ModelError(f"model file not found: {path}") from None
    return str(resolved), mtime, device, card.to_json() if card is not None else ""


def _is_cached(path: str | Path, device: str) -> bool:
    try:
        key = _cache_key(path, device)
    except ModelError:
        return False  # get_denoiser reports it
    with _CACHE_LOCK:
        return key in _CACHE


def clear_cache() -> None:
    """Forget all cached sessions (tests, or after a model was replaced)."""
    with _CACHE_LOCK:
        _CACHE.clear()
