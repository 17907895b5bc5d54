"""Small, valid ONNX models with embedded model cards, built with onnx.helper (no torch).

* ``oracle_sr3``: knows the answer. Its clean image is ``sharpen(lr_up)`` (a 3x3 depthwise
  conv) and it returns the exact eps / x0 / v of that target for any y_t and noise level, so
  every sampler must end at ``clip(sharpen(lr_up))``.
* ``local_sr3``: a random 3x3 conv (optionally two) over concat(lr_up, y_t) plus a noise-level
  term; it does not know the answer, so its output depends on the seed. Receptive-field
  radius = number of convs.
* ``regression``: y = sharpen(lr_up) (or the residual sharpen(lr_up) - lr_up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, InferencePreset, ModelCard, embed_card

OPSET = 17
IR_VERSION = 9
TRAIN = ScheduleSpec("linear", 2000, 1e-6, 1e-2)
SHARPEN_AMOUNT = 0.1


def sharpen_kernel(amount: float = SHARPEN_AMOUNT) -> np.ndarray:
    """Depthwise (3, 1, 3, 3) kernel: identity plus ``amount`` times a Laplacian high-pass."""
    k = np.array([[0, -amount, 0], [-amount, 1 + 4 * amount, -amount], [0, -amount, 0]], dtype=np.float32)
    return np.repeat(k[None, None], 3, axis=0)


def sharpen_numpy(chw: np.ndarray, amount: float = SHARPEN_AMOUNT) -> np.ndarray:
    """What the fixture's conv computes on a (C, H, W) plane with zero padding (for checks)."""
    p = np.pad(chw, ((0, 0), (1, 1), (1, 1)))
    centre = p[:, 1:-1, 1:-1]
    neighbours = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
    return (1 + 4 * amount) * centre - amount * neighbours


def make_presets(train: ScheduleSpec = TRAIN) -> dict[str, InferencePreset]:
    def preset(steps: int, strength: float, **kw: Any) -> InferencePreset:
        levels = inference_levels(train, steps, strength)
        return InferencePreset(
            steps=len(levels), noise_levels=tuple(float(g) for g in levels), strength=strength,
            schedule={"type": "train_subsequence", "spacing": "uniform"}, **kw,
        )

    return {
        "fast": preset(4, 0.3, sampler="ddim", eta=0.0, start="bicubic", back_projection=1),
        "balanced": preset(6, 0.5, sampler="ddim", eta=0.0, start="regression", back_projection=1),
        "quality": preset(10, 1.0, sampler="ddpm", start="noise"),
    }


def make_card(kind: str = "sr3", *, name: str | None = None, scale: int = 4, size_multiple: int = 8,
              prediction: str = "epsilon", target: str = "hr", noise_conditioning: str = "sqrt_gamma",
              **changes: Any) -> ModelCard:
    sr3 = kind == "sr3"
    fields: dict[str, Any] = dict(
        name=name or f"fixture-{kind}-{scale}x",
        kind=kind,
        scale=scale,
        size_multiple=size_multiple,
        inputs=("lr_up", "y_t", "noise_level") if sr3 else ("lr_up",),
        outputs=("prediction",) if sr3 else ("y",),
        prediction=prediction if sr3 else "x0",
        target=target,
        noise_conditioning=noise_conditioning,
        train_schedule=TRAIN if sr3 else None,
        inference_presets=make_presets() if sr3 else {},
        default_preset="balanced",
        description="test fixture",
        training={"data": "none", "steps": 0},
        metrics={"psnr_y": 1.0},
    )
    fields.update(changes)
    return ModelCard(**fields)


def _tensor(name: str, dtype: int, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _finish(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
            inits: list[onnx.TensorProto], card: ModelCard | None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fixture", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sr3-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if card is not None:
        embed_card(model, card)
    return model


def _inputs_fp(names: tuple[str, ...], fp16: bool, nodes: list[onnx.NodeProto], noise: bool) -> tuple[
        list[onnx.ValueInfoProto], list[str]]:
    """Graph inputs and the float32 names the body computes with. With ``fp16`` the image inputs
    are float16 and noise_level stays float32 (sqrt(gamma) near 1 rounds to 1.0 in float16)."""
    infos, body = [], []
    for name in names:
        rank_one = noise and name == names[-1]
        half = fp16 and not rank_one
        dtype = TensorProto.FLOAT16 if half else TensorProto.FLOAT
        infos.append(_tensor(name, dtype, ["N"] if rank_one else ["N", 3, "H", "W"]))
        if half:
            nodes.append(helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT))
            body.append(f"{name}_f32")
        else:
            body.append(name)
    return infos, body


def _output(name: str, source: str, fp16: bool, nodes: list[onnx.NodeProto]) -> onnx.ValueInfoProto:
    if fp16:
        nodes.append(helper.make_node("Cast", [source], [name], to=TensorProto.FLOAT16))
    else:
        nodes.append(helper.make_node("Identity", [source], [name]))
    return _tensor(name, TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT, ["N", 3, "H", "W"])


def oracle_sr3(card: ModelCard | None = None, *, fp16: bool = False, amount: float = SHARPEN_AMOUNT,
               **card_changes: Any) -> onnx.ModelProto:
    """The exact eps / x0 / v for the clean target sharpen(lr_up) (or its residual)."""
    card = card or make_card("sr3", **card_changes)
    nodes: list[onnx.NodeProto] = []
    infos, (lr_up, y_t, level) = _inputs_fp(card.inputs, fp16, nodes, noise=True)
    inits = [
        numpy_helper.from_array(sharpen_kernel(amount), "kernel"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "shape4"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "tiny"),
    ]
    add = nodes.append
    add(helper.make_node("Conv", [lr_up, "kernel"], ["target"], group=3, pads=[1, 1, 1, 1]))
    y0 = "target"
    if card.target == "residual":
        add(helper.make_node("Sub", ["target", lr_up], ["y0"]))
        y0 = "y0"
    add(helper.make_node("Reshape", [level, "shape4"], ["level4"]))
    if card.noise_conditioning == "sqrt_gamma":
        add(helper.make_node("Identity", ["level4"], ["sg"]))
        add(helper.make_node("Mul", ["level4", "level4"], ["g"]))
    else:
        add(helper.make_node("Identity", ["level4"], ["g"]))
        add(helper.make_node("Sqrt", ["level4"], ["sg"]))
    add(helper.make_node("Sub", ["one", "g"], ["one_minus_g_raw"]))
    add(helper.make_node("Max", ["one_minus_g_raw", "tiny"], ["one_minus_g"]))
    add(helper.make_node("Sqrt", ["one_minus_g"], ["s1g"]))
    add(helper.make_node("Mul", ["sg", y0], ["sg_y0"]))
    add(helper.make_node("Sub", [y_t, "sg_y0"], ["noise_part"]))
    add(helper.make_node("Div", ["noise_part", "s1g"], ["eps"]))  # Eq. 4 solved for eps
    out = {"epsilon": "eps", "x0": y0}.get(card.prediction)
    if card.prediction == "v":
        add(helper.make_node("Mul", ["sg", "eps"], ["sg_eps"]))
        add(helper.make_node("Mul", ["s1g", y0], ["s1g_y0"]))
        add(helper.make_node("Sub", ["sg_eps", "s1g_y0"], ["v"]))
        out = "v"
    assert out is not None
    output = _output(card.outputs[0], out, fp16, nodes)
    return _finish(nodes, infos, [output], inits, card)


def local_sr3(card: ModelCard | None = None, *, layers: int = 1, seed: int = 0, fp16: bool = False,
              **card_changes: Any) -> onnx.ModelProto:
    """``layers`` random 3x3 convs over concat(lr_up, y_t), plus 0.3 * noise_level."""
    card = card or make_card("sr3", **card_changes)
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    infos, (lr_up, y_t, level) = _inputs_fp(card.inputs, fp16, nodes, noise=True)
    inits = [numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "shape4"),
             numpy_helper.from_array(np.array(0.3, dtype=np.float32), "level_weight")]
    nodes.append(helper.make_node("Concat", [lr_up, y_t], ["h0"], axis=1))
    channels = 6
    for i in range(layers):
        out_ch = 3 if i == layers - 1 else 6
        weight = (rng.standard_normal((out_ch, channels, 3, 3)) * 0.2).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        inits.append(numpy_helper.from_array((rng.standard_normal(out_ch) * 0.1).astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [f"h{i}", f"w{i}", f"b{i}"], [f"h{i + 1}"], pads=[1, 1, 1, 1]))
        channels = out_ch
    nodes.append(helper.make_node("Reshape", [level, "shape4"], ["level4"]))
    nodes.append(helper.make_node("Mul", ["level4", "level_weight"], ["level_term"]))
    nodes.append(helper.make_node("Add", [f"h{layers}", "level_term"], ["out"]))
    output = _output(card.outputs[0], "out", fp16, nodes)
    return _finish(nodes, infos, [output], inits, card)


def regression(card: ModelCard | None = None, *, amount: float = SHARPEN_AMOUNT, kernel: np.ndarray | None = None,
               **card_changes: Any) -> onnx.ModelProto:
    """y = sharpen(lr_up) (or ``kernel``, (3, 1, 3, 3) per channel, instead of the sharpen), or that minus
    lr_up for a residual target."""
    card = card or make_card("regression", **card_changes)
    nodes: list[onnx.NodeProto] = []
    infos, (lr_up,) = _inputs_fp(card.inputs, False, nodes, noise=False)
    inits = [numpy_helper.from_array(sharpen_kernel(amount) if kernel is None else kernel.astype(np.float32),
                                     "kernel")]
    nodes.append(helper.make_node("Conv", [lr_up, "kernel"], ["target"], group=3, pads=[1, 1, 1, 1]))
    out = "target"
    if card.target == "residual":
        nodes.append(helper.make_node("Sub", ["target", lr_up], ["residual"]))
        out = "residual"
    output = _output(card.outputs[0], out, False, nodes)
    return _finish(nodes, infos, [output], inits, card)


def custom_graph(input_specs: list[tuple[str, int, list[Any]]], output_specs: list[tuple[str, int, list[Any]]],
                 card: ModelCard | None) -> onnx.ModelProto:
    """A graph whose outputs are Identity (or Cast) of its first input, with any names, types and ranks:
    for tests of the denoiser's checks against the card."""
    nodes = []
    first, first_type = input_specs[0][0], input_specs[0][1]
    for name, dtype, _ in output_specs:
        if dtype == first_type:
            nodes.append(helper.make_node("Identity", [first], [name]))
        else:
            nodes.append(helper.make_node("Cast", [first], [name], to=dtype))
    inputs = [_tensor(n, t, s) for n, t, s in input_specs]
    outputs = [_tensor(n, t, s) for n, t, s in output_specs]
    return _finish(nodes, inputs, outputs, [], card)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_model_set(folder: Path, **card_changes: Any) -> dict[str, Path]:
    """An SR3 oracle, a local SR3 and a regression model in ``folder``."""
    return {
        "oracle": save(oracle_sr3(name="fixture-oracle-4x", **card_changes), folder / "fixture-oracle-4x.onnx"),
        "local": save(local_sr3(name="fixture-local-4x", **card_changes), folder / "fixture-local-4x.onnx"),
        "regression": save(regression(name="fixture-regression-4x"), folder / "fixture-regression-4x.onnx"),
    }


# --- hostile and broken models (issue 12) ---------------------------------------------------------
ENDLESS_TRIPS = 2**62
"""The Loop's trip count: at a microsecond an iteration, about 146,000 years."""


def _io(card: ModelCard) -> tuple[list[onnx.ValueInfoProto], onnx.ValueInfoProto]:
    """The graph inputs and the output the card names, float32, N/H/W dynamic."""
    sr3 = card.kind == "sr3"
    inputs = [_tensor(name, TensorProto.FLOAT, ["N"] if sr3 and name == card.inputs[-1] else ["N", 3, "H", "W"])
              for name in card.inputs]
    return inputs, _tensor(card.outputs[0], TensorProto.FLOAT, ["N", 3, "H", "W"])


def endless_loop_sr3(card: ModelCard) -> onnx.ModelProto:
    """An SR3 graph whose prediction is y_t carried through a Loop of ENDLESS_TRIPS iterations.

    Its input and output names, ranks and types match ``card`` (give it a real SR3 card), so it
    passes the card and signature checks: only the operator allowlist or a time limit stops it."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["keep_in"], ["keep_out"]), helper.make_node("Identity", ["y_in"], ["y_out"])],
        "body",
        [_tensor("i", TensorProto.INT64, []), _tensor("keep_in", TensorProto.BOOL, []),
         _tensor("y_in", TensorProto.FLOAT, None)],
        [_tensor("keep_out", TensorProto.BOOL, []), _tensor("y_out", TensorProto.FLOAT, None)],
    )
    inits = [numpy_helper.from_array(np.array(ENDLESS_TRIPS, dtype=np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "keep_going")]
    inputs, output = _io(card)
    loop = helper.make_node("Loop", ["trips", "keep_going", card.inputs[1]], [card.outputs[0]], body=body,
                            name="forever")
    return _finish([loop], inputs, [output], inits, card)


def constant_output(card: ModelCard, value: float) -> onnx.ModelProto:
    """A graph whose output is ``value`` on every pixel (finite, whatever the size): 0 * input + value."""
    inputs, output = _io(card)
    inits = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
             numpy_helper.from_array(np.array(value, dtype=np.float32), "value")]
    source = card.inputs[1] if card.kind == "sr3" else card.inputs[0]
    nodes = [helper.make_node("Mul", [source, "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "value"], [card.outputs[0]])]
    return _finish(nodes, inputs, [output], inits, card)


def slow_sr3(card: ModelCard, side: int = 2048, repeats: int = 64) -> onnx.ModelProto:
    """Only allowed operators, but ``repeats`` MatMuls of side x side matrices built from the input
    (about 17 GFLOP each at 2048, so it cannot be folded away at load time): minutes of work."""
    inputs, output = _io(card)
    inits = [numpy_helper.from_array(np.array([side, side], dtype=np.int64), "square"),
             numpy_helper.from_array(np.array(1.0 / side, dtype=np.float32), "shrink"),
             numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    nodes = [helper.make_node("ReduceMean", [card.inputs[0]], ["mean"], keepdims=0),
             helper.make_node("Expand", ["mean", "square"], ["m0"])]
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"p{i}"]))
        nodes.append(helper.make_node("Mul", [f"p{i}", "shrink"], [f"m{i + 1}"]))
    nodes += [helper.make_node("ReduceMean", [f"m{repeats}"], ["total"], keepdims=0),
              helper.make_node("Mul", ["total", "zero"], ["nil"]),
              helper.make_node("Add", [card.inputs[1], "nil"], [card.outputs[0]])]
    return _finish(nodes, inputs, [output], inits, card)


def without_card(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph as a plain ONNX file: no 'sr3.model_card' metadata."""
    kept = [p for p in model.metadata_props if p.key != CARD_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model
