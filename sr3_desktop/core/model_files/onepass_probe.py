"""One-pass ONNX upscalers from elsewhere (Real-ESRGAN and its relatives), run as comparison models.

Such a file carries no model card: NCHW RGB goes in at the image's own size, the upscaled RGB
comes out. This is the one place where the app infers a model's interface, and it does so by a
test run, never from the file's bytes. ``find_interface`` feeds a small test image to the graph's
only input in each candidate range ([0, 1], then [-1, 1]), reads the scale off the output's shape,
and keeps the range in which the output, averaged back down to the input's size, stays closer to
the test image (the paper's consistency, Sec. 4: a faithful upscale downsamples to its input),
measured in the network's own units (so that the wider range does not shrink an error that does
not depend on the range). A network that never saw negative values mangles them, so a [0, 1] model
shows itself; [-1, 1] is chosen only when it is clearly better (``RANGE_PREFERENCE``): a network
indifferent to the range (a nearest-upsampled residual, as in SRVGGNetCompact) is taken at [0, 1],
the common one. The same run at an odd size tells whether the graph takes any size
(``size_multiple`` 1) or needs ``SAFE_MULTIPLE``.

``onepass_runner.run_onepass`` runs such a model over an image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.imageio.atomic import sha256_of
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, ONEPASS_RANGES, ModelCard

PROBE_SIZE = (16, 24)
"""(height, width) of the test image: small (a Real-ESRGAN x4plus run of it takes about a second), not
square (so a swapped axis shows), and a multiple of 8 (so pixel-unshuffle models run)."""
ODD_SIZE = (9, 11)
"""The second test run: a graph that fails at this size is given inputs padded to ``SAFE_MULTIPLE``."""
SAFE_MULTIPLE = 8
"""The size multiple of a graph that fails at an odd size: 16 x 24 ran, so any multiple of 8 does."""
RANGE_PREFERENCE = 0.5
"""[-1, 1] is chosen only when its consistency error is below this fraction of [0, 1]'s (the common range)."""
MAX_CONSISTENCY_MSE = 0.01
"""Refuse a model whose downsampled output is further than this (MSE in [0, 1]) from the test image in
both ranges: it is not an upscaler of the image it is given (e.g. not RGB, or a different task)."""
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class Interface:
    """What the test run found."""

    input_name: str
    output_name: str
    input_dtype: np.dtype
    scale: int
    value_range: tuple[float, float]
    size_multiple: int
    errors: dict[str, float]
    """Consistency error of the output in each candidate range, as MSE in the network's own units (a [-1, 1]
    error is 4 times the same error in [0, 1] image units), e.g. {"[0, 1]": 1e-5, "[-1, 1]": 0.05}."""


def probe_image(height: int, width: int) -> np.ndarray:
    """A smooth HWC [0, 1] image with a different pattern per channel, spanning most of the range."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    red = 0.1 + 0.8 * rows * np.ones_like(cols)
    green = 0.1 + 0.8 * cols * np.ones_like(rows)
    blue = 0.5 + 0.4 * np.sin(3.0 * rows + 2.0 * cols) * np.cos(2.0 * rows - cols)
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


def encode(image: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """HWC [0, 1] -> NCHW (N = 1) in ``value_range``."""
    low, high = value_range
    chw = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) * (high - low) + low
    return np.ascontiguousarray(chw[None], dtype=np.float32)


def decode(array: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """(N = 1) CHW in ``value_range`` -> HWC [0, 1] float32, clipped."""
    low, high = value_range
    chw = array[0] if array.ndim == 4 else array
    hwc = (np.asarray(chw, dtype=np.float32).transpose(1, 2, 0) - low) / (high - low)
    return np.clip(hwc, 0.0, 1.0).astype(np.float32)


def box_down(image: np.ndarray, scale: int) -> np.ndarray:
    """HWC image averaged over scale x scale blocks (the inverse of a nearest upsample)."""
    height, width = image.shape[0] // scale, image.shape[1] // scale
    blocks = image[: height * scale, : width * scale].reshape(height, scale, width, scale, -1)
    return blocks.mean(axis=(1, 3))


def range_label(value_range: tuple[float, float]) -> str:
    return f"[{value_range[0]:g}, {value_range[1]:g}]"


def _signature(session: ort.InferenceSession, name: str) -> tuple[str, str, np.dtype]:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{name} has no '{CARD_METADATA_KEY}' metadata (it was not exported by `python -m exporter "
                         "export`), and it is not a one-pass upscaler either: such a model has one input and one "
                         f"output, this one has {len(inputs)} and {len(outputs)}")
    for value in (inputs[0], outputs[0]):
        if len(value.shape) != 4 or value.type not in _ORT_TYPES:
            raise ModelError(f"{name} is not a one-pass upscaler: '{value.name}' is {value.type} of rank "
                             f"{len(value.shape)}, expected a float NCHW image")
        if isinstance(value.shape[1], int) and value.shape[1] != 3:
            raise ModelError(f"{name} is not an RGB upscaler: '{value.name}' has {value.shape[1]} channels")
    return inputs[0].name, outputs[0].name, np.dtype(_ORT_TYPES[inputs[0].type])


def _scale_of(out_shape: tuple[int, ...], height: int, width: int, name: str) -> int:
    ok = len(out_shape) == 4 and out_shape[:2] == (1, 3) and out_shape[2] % height == 0 and out_shape[3] % width == 0
    scale = out_shape[2] // height if ok else 0
    if not ok or out_shape[3] // width != scale or not 2 <= scale <= 16:
        raise ModelError(f"{name} is not a one-pass upscaler: a {width}x{height} test image gave an output of shape "
                         f"{list(out_shape)}, not (1, 3, s*{height}, s*{width}) for a scale s from 2 to 16")
    return scale


def find_interface(session: ort.InferenceSession, name: str,
                   run_options: ort.RunOptions | None = None) -> Interface:
    """The test runs: the scale, the input range and the size multiple of a card-less upscaler."""
    input_name, output_name, dtype = _signature(session, name)
    options = run_options or ort.RunOptions()
    options.log_severity_level = 4  # a failed odd-size run is an answer, not an error to log

    def run(image: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        feed = {input_name: encode(image, value_range).astype(dtype)}
        return np.asarray(session.run([output_name], feed, options)[0], dtype=np.float32)

    image = probe_image(*PROBE_SIZE)
    errors: dict[str, float] = {}
    scale = 0
    for value_range in ONEPASS_RANGES:
        try:
            out = run(image, value_range)
        except Exception as err:  # onnxruntime's own error types
            raise ModelError(f"{name} failed on a {PROBE_SIZE[1]}x{PROBE_SIZE[0]} test image: "
                             f"{' '.join(str(err).split())[:300]}") from None
        scale = _scale_of(out.shape, *PROBE_SIZE, name)
        if not np.all(np.isfinite(out)):
            raise ModelError(f"{name} produced invalid values (NaN or infinity) on a test image")
        width = value_range[1] - value_range[0]  # the error in the network's units: (decoded error * width) ** 2
        errors[range_label(value_range)] = float(np.mean((box_down(decode(out, value_range), scale) - image) ** 2)
                                                 * width**2)
    unit, signed = errors[range_label(ONEPASS_RANGES[0])], errors[range_label(ONEPASS_RANGES[1])]
    chosen = ONEPASS_RANGES[1] if signed < RANGE_PREFERENCE * unit else ONEPASS_RANGES[0]
    image_mse = (unit, signed / 4.0)  # back in [0, 1] image units
    if min(image_mse) > MAX_CONSISTENCY_MSE:
        raise ModelError(f"{name} is not an upscaler of the image it is given: its output, downsampled, differs from "
                         f"the test image by an MSE of {image_mse[0]:.3g} with input in [0, 1] and {image_mse[1]:.3g} "
                         f"with input in [-1, 1] (at most {MAX_CONSISTENCY_MSE:g} is expected)")
    return Interface(input_name, output_name, dtype, scale, chosen, _size_multiple(run, chosen, scale), errors)


def _size_multiple(run: Callable[[np.ndarray, tuple[float, float]], np.ndarray], value_range: tuple[float, float],
                   scale: int) -> int:
    height, width = ODD_SIZE
    try:
        shape = run(probe_image(height, width), value_range).shape
    except Exception:  # the graph needs even sizes (pixel-unshuffle) or a fixed one
        return SAFE_MULTIPLE
    return 1 if tuple(shape) == (1, 3, scale * height, scale * width) else SAFE_MULTIPLE




def onepass_card(path: Path, interface: Interface) -> ModelCard:
    """The card that says what the test run found; the model is named after its file."""
    label = range_label(interface.value_range)
    probe: dict[str, Any] = {
        "by": "test run", "source_file": path.name, "source_sha256": sha256_of(path),
        "probe_image": [PROBE_SIZE[1], PROBE_SIZE[0]],
        "output": [PROBE_SIZE[1] * interface.scale, PROBE_SIZE[0] * interface.scale],
        "consistency_mse": dict(interface.errors),
        "odd_size_ran": interface.size_multiple == 1,
    }
    return ModelCard(
        name=path.stem, kind="onepass", scale=interface.scale, size_multiple=interface.size_multiple,
        inputs=(interface.input_name,), outputs=(interface.output_name,), prediction="x0",
        value_range=interface.value_range, default_preset="",
        description=(f"A one-pass upscaler without a model card; a test run found {interface.scale}x, input range "
                     f"{label}, sizes in multiples of {interface.size_multiple}."),
        probe=probe,
    )


def describe_found(card: ModelCard) -> str:
    """One line for the CLI and the app: what the test run found."""
    return (f"{card.name} has no model card: a test run found a one-pass {card.scale}x upscaler, input range "
            f"{range_label(card.value_range)}, sizes in multiples of {card.size_multiple}")
