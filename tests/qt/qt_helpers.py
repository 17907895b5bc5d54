"""Helpers for the app's tests: tiny ONNX models with cards, sample images, message boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from PySide6.QtWidgets import QApplication, QMessageBox

from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels
from sr3_desktop.core.model_files.card import InferencePreset, ModelCard, embed_card

TRAIN = ScheduleSpec("linear", 2000, 1e-6, 1e-2)
SR3_NAME, REGRESSION_NAME = "qt-test-sr3", "qt-test-regression"


# --- tiny models built with onnx.helper --------------------------------------------------------------
def _sharpen_kernel(amount: float) -> np.ndarray:
    k = np.array([[0, -amount, 0], [-amount, 1 + 4 * amount, -amount], [0, -amount, 0]], dtype=np.float32)
    return np.repeat(k[None, None], 3, axis=0)


def _presets() -> dict[str, InferencePreset]:
    def preset(steps: int, strength: float, description: str, **kw: Any) -> InferencePreset:
        levels = inference_levels(TRAIN, steps, strength)
        return InferencePreset(steps=len(levels), noise_levels=tuple(float(g) for g in levels), strength=strength,
                               schedule={"type": "train_subsequence", "spacing": "uniform"},
                               description=description, **kw)

    return {
        "fast": preset(4, 0.3, "Four DDIM steps from a noised bicubic image.", sampler="ddim", start="bicubic",
                       texture_gain=1.25),
        "balanced": preset(8, 0.5, "Eight DDIM steps from a noised regression estimate.", sampler="ddim",
                           start="regression", back_projection=1),
        "quality": preset(20, 1.0, "The paper's chain: DDPM from pure noise.", sampler="ddpm", start="noise"),
        "compressed": preset(3, 0.3, "Three DDIM steps from a noised regression estimate.", sampler="ddim",
                             start="regression"),
    }


def make_card(kind: str) -> ModelCard:
    sr3 = kind == "sr3"
    return ModelCard(
        name=SR3_NAME if sr3 else REGRESSION_NAME, kind=kind, scale=4, size_multiple=2,  # type: ignore[arg-type]
        inputs=("lr_up", "y_t", "noise_level") if sr3 else ("lr_up",), outputs=("prediction",) if sr3 else ("y",),
        prediction="epsilon" if sr3 else "x0", train_schedule=TRAIN if sr3 else None,
        inference_presets=_presets() if sr3 else {}, default_preset="balanced",
        compressed_preset="compressed" if sr3 else "",
        description=f"A {kind} model built from a few ONNX operators for the app's tests.",
        training={"data": "synthetic gradients", "steps": 0, "code_version": "tests"},
        metrics={"psnr_y": {"bicubic": 24.1, "sr3": 23.5}, "consistency": 1.2},
    )


def _finish(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any],
            card: ModelCard) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "qt-test", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sr3-qt-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    embed_card(model, card)
    return model


def build_sr3() -> onnx.ModelProto:
    """eps = 0.8 * (y_t - sqrt(g) * target) / sqrt(1 - g) with target = sharpen(lr_up) (paper Eq. 4 solved for
    eps, damped so the predicted y0 still moves with y_t and the live preview changes from step to step)."""
    image = ["N", 3, "H", "W"]
    inputs = [helper.make_tensor_value_info("lr_up", TensorProto.FLOAT, image),
              helper.make_tensor_value_info("y_t", TensorProto.FLOAT, image),
              helper.make_tensor_value_info("noise_level", TensorProto.FLOAT, ["N"])]
    outputs = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, image)]
    inits = [numpy_helper.from_array(_sharpen_kernel(0.15), "kernel"),
             numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "shape4"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
             numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "tiny"),
             numpy_helper.from_array(np.array(0.8, dtype=np.float32), "damping")]
    nodes = [
        helper.make_node("Conv", ["lr_up", "kernel"], ["target"], group=3, pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["noise_level", "shape4"], ["sg"]),
        helper.make_node("Mul", ["sg", "sg"], ["g"]),
        helper.make_node("Sub", ["one", "g"], ["omg"]),
        helper.make_node("Max", ["omg", "tiny"], ["omg_safe"]),
        helper.make_node("Sqrt", ["omg_safe"], ["s1g"]),
        helper.make_node("Mul", ["sg", "target"], ["sg_target"]),
        helper.make_node("Sub", ["y_t", "sg_target"], ["noise_part"]),
        helper.make_node("Div", ["noise_part", "s1g"], ["eps"]),
        helper.make_node("Mul", ["eps", "damping"], ["prediction"]),
    ]
    return _finish(nodes, inputs, outputs, inits, make_card("sr3"))


def build_regression() -> onnx.ModelProto:
    """y = a mild sharpen of lr_up: differs from bicubic, as a regression model's output does."""
    image = ["N", 3, "H", "W"]
    nodes = [helper.make_node("Conv", ["lr_up", "kernel"], ["y"], group=3, pads=[1, 1, 1, 1])]
    return _finish(nodes, [helper.make_tensor_value_info("lr_up", TensorProto.FLOAT, image)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, image)],
                   [numpy_helper.from_array(_sharpen_kernel(0.3), "kernel")], make_card("regression"))


def write_image(path: Path, size: tuple[int, int] = (24, 16), seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=2) * 200 + rng.integers(0, 40, (height, width, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path)
    return path


def visible_message_boxes() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def close_dialogs() -> None:
    app = QApplication.instance()
    if app is None:
        return
    for box in visible_message_boxes():
        box.done(0)


def build_onepass(scale: int = 4) -> onnx.ModelProto:
    """A card-less one-pass upscaler, as Real-ESRGAN's files come: a nearest upsample of a mild sharpen of the
    LR image ("lr" -> "hr", [0, 1]). Its test run finds the scale; its output differs from every other pane."""
    image = ["N", 3, "H", "W"]
    inits = [numpy_helper.from_array(_sharpen_kernel(0.2), "kernel"),
             numpy_helper.from_array(np.array([1, 1, scale, scale], dtype=np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["lr", "kernel"], ["sharp"], group=3, pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["sharp", "", "scales"], ["hr"], mode="nearest")]
    graph = helper.make_graph(nodes, "qt-test-onepass", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, image)],
                              [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 3, "H4", "W4"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sr3-qt-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model
