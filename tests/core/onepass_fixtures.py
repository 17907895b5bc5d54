"""Small one-pass upscalers without a model card, built with onnx.helper like ``onnx_fixtures``.

* ``unit_range_upscaler``: a 3x3 conv to scale**2 sub-pixels per channel, then DepthToSpace and a
  PRelu (slope 0.05): each sub-pixel is the input pixel plus a random 3x3 detail whose taps sum
  to zero over the sub-pixels, so the output averaged back down is exactly the input. It works
  in [0, 1]; negative inputs (the [-1, 1] encoding) are squashed by its PRelu, as a network that
  never saw them would. Receptive-field radius: 1 input pixel.
* ``signed_range_upscaler``: the same conv without PRelu, minus ``Relu(mean(x) - 0.25)``: right for
  images whose mean is near 0 (the [-1, 1] encoding of an ordinary photo), biased darker for
  [0, 1] ones (a network that learned mid-grey = 0).
* ``even_only_upscaler``: SpaceToDepth(2) first (pixel unshuffle), so odd sizes fail.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx_fixtures import _finish, _tensor

INPUT, OUTPUT = "lr", "hr"
PRELU_SLOPE = 0.05
DETAIL = 0.05
"""Size of the random 3x3 detail of each sub-pixel (its taps sum to zero over the sub-pixels)."""


def upsample_kernel(scale: int, seed: int = 0, detail: float = DETAIL, in_channels: int = 3) -> np.ndarray:
    """(3 * scale**2, in_channels, 3, 3): channel c, sub-pixel k = identity of c plus zero-sum detail.

    DepthToSpace (CRD, as torch's PixelShuffle) takes output channel c * scale**2 + k to channel c, sub-pixel k."""
    rng = np.random.default_rng(seed)
    subs = scale * scale
    noise = rng.standard_normal((3, subs, 3, 3)).astype(np.float32) * detail
    noise -= noise.mean(axis=1, keepdims=True)  # over the sub-pixels: the box average is untouched
    kernel = np.zeros((3 * subs, in_channels, 3, 3), dtype=np.float32)
    for c in range(3):
        for k in range(subs):
            kernel[c * subs + k, c] = noise[c, k]
            kernel[c * subs + k, c, 1, 1] += 1.0
    return kernel


def _graph(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], last: str) -> onnx.ModelProto:
    nodes.append(helper.make_node("Identity", [last], [OUTPUT]))
    inputs = [_tensor(INPUT, TensorProto.FLOAT, ["N", 3, "H", "W"])]
    outputs = [_tensor(OUTPUT, TensorProto.FLOAT, ["N", 3, "H2", "W2"])]
    return _finish(nodes, inputs, outputs, inits, None)


def _upsample(source: str, scale: int, seed: int, in_channels: int = 3) -> tuple[list[onnx.NodeProto],
                                                                                 list[onnx.TensorProto]]:
    inits = [numpy_helper.from_array(upsample_kernel(scale, seed, in_channels=in_channels), "w")]
    nodes = [helper.make_node("Conv", [source, "w"], ["subs"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["subs"], ["up"], blocksize=scale, mode="CRD")]
    return nodes, inits


def unit_range_upscaler(scale: int = 2, seed: int = 0) -> onnx.ModelProto:
    nodes, inits = _upsample(INPUT, scale, seed)
    inits.append(numpy_helper.from_array(np.full((1, 1, 1), PRELU_SLOPE, dtype=np.float32), "slope"))
    nodes.append(helper.make_node("PRelu", ["up", "slope"], ["out"]))
    return _graph(nodes, inits, "out")


def signed_range_upscaler(scale: int = 2, seed: int = 0) -> onnx.ModelProto:
    nodes, inits = _upsample(INPUT, scale, seed)
    inits.append(numpy_helper.from_array(np.array(0.25, dtype=np.float32), "quarter"))
    nodes += [helper.make_node("ReduceMean", [INPUT], ["mean"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Sub", ["mean", "quarter"], ["excess"]),
              helper.make_node("Relu", ["excess"], ["bias"]),
              helper.make_node("Sub", ["up", "bias"], ["out"])]
    return _graph(nodes, inits, "out")


def even_only_upscaler(scale: int = 2) -> onnx.ModelProto:
    """Pixel unshuffle by 2, then a 1x1 conv and DepthToSpace by 2 * scale: a nearest upsample of even sizes."""
    subs = 4
    kernel = np.zeros((3 * (2 * scale) ** 2, 3 * subs, 1, 1), dtype=np.float32)
    for c in range(3):
        for out_y in range(2 * scale):
            for out_x in range(2 * scale):
                k = (out_y // scale) * 2 + out_x // scale  # the input sub-pixel this output sub-pixel copies
                kernel[c * (2 * scale) ** 2 + out_y * 2 * scale + out_x, k * 3 + c] = 1.0  # SpaceToDepth: k * C + c
    inits = [numpy_helper.from_array(kernel, "w")]
    nodes = [helper.make_node("SpaceToDepth", [INPUT], ["packed"], blocksize=2),
             helper.make_node("Conv", ["packed", "w"], ["subs"]),
             helper.make_node("DepthToSpace", ["subs"], ["out"], blocksize=2 * scale, mode="CRD")]
    return _graph(nodes, inits, "out")


def numpy_unit_range(lr_chw: np.ndarray, scale: int = 2, seed: int = 0) -> np.ndarray:
    """What ``unit_range_upscaler`` computes on a (3, H, W) plane (zero padding), for checks."""
    kernel = upsample_kernel(scale, seed)
    padded = np.pad(lr_chw, ((0, 0), (1, 1), (1, 1)))
    height, width = lr_chw.shape[1:]
    subs = np.zeros((kernel.shape[0], height, width), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            subs += np.einsum("oc,chw->ohw", kernel[:, :, dy, dx], padded[:, dy : dy + height, dx : dx + width])
    up = subs.reshape(3, scale, scale, height, width).transpose(0, 3, 1, 4, 2).reshape(3, height * scale,
                                                                                       width * scale)
    return np.where(up >= 0, up, PRELU_SLOPE * up).astype(np.float32)
