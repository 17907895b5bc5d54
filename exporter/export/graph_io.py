"""What `export` and `convert` share: the graph's IO spec, the one ``to_onnx``, the one card builder,
the parity check (PyTorch against onnxruntime) and the one way an .onnx file is written.

The graph has dynamic N, H and W (traced from a batch-2, non-square example so neither is frozen).
SR3 takes (lr_up, y_t, noise_level) and returns ``prediction``; regression takes lr_up and returns ``y``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from torch import nn

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio.atomic import atomic_file
from sr3_desktop.core.literals import ModelKind
from sr3_desktop.core.model_files.card import (
    REGRESSION_INPUTS,
    REGRESSION_OUTPUTS,
    SR3_INPUTS,
    SR3_OUTPUTS,
    InferencePreset,
    ModelCard,
    embed_card,
)

OPSET = 17
DYNAMIC = {0: "N", 2: "H", 3: "W"}
PARITY_TOLERANCE = 1e-4


class ExportError(SR3Error):
    """The model could not be exported to ONNX."""


@dataclass(frozen=True)
class GraphIO:
    """The interface of an exported network: its kind (which fixes the IO names) and size multiple."""

    kind: ModelKind
    size_multiple: int
    channels: int = 3

    @property
    def inputs(self) -> tuple[str, ...]:
        return SR3_INPUTS if self.kind == "sr3" else REGRESSION_INPUTS

    @property
    def outputs(self) -> tuple[str, ...]:
        return SR3_OUTPUTS if self.kind == "sr3" else REGRESSION_OUTPUTS

    def example_inputs(self, batch: int = 2, seed: int = 0,
                       units: tuple[int, int] = (2, 3)) -> tuple[torch.Tensor, ...]:
        """Random inputs in the card's value range, (lr_up, y_t, noise_level) or (lr_up,); ``units`` x
        max(size_multiple, 8) px high and wide (non-square by default); one noise level per batch item."""
        gen = torch.Generator().manual_seed(seed)
        unit = max(self.size_multiple, 8)
        shape = (batch, self.channels, units[0] * unit, units[1] * unit)
        lr_up = torch.rand(shape, generator=gen) * 2 - 1
        if self.kind != "sr3":
            return (lr_up,)
        y_t = torch.randn(shape, generator=gen)
        noise_level = torch.rand(batch, generator=gen) * 0.98 + 0.01
        return lr_up, y_t, noise_level


def to_onnx(model: nn.Module, spec: GraphIO, opset: int = OPSET) -> onnx.ModelProto:
    """Trace any network with ``spec``'s IO to an ONNX proto with dynamic N, H, W (TorchScript exporter:
    small, fast, clean graph). Failures become an ExportError with the gist."""
    axes: dict[str, dict[int, str]] = {n: ({0: "N"} if n == "noise_level" else DYNAMIC) for n in spec.inputs}
    axes[spec.outputs[0]] = DYNAMIC
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic: shapes stay symbolic
            torch.onnx.export(
                model, spec.example_inputs(), cast(Any, buffer), input_names=list(spec.inputs),
                output_names=list(spec.outputs), dynamic_axes=axes, opset_version=opset,
                do_constant_folding=True, dynamo=False,
            )
    except Exception as err:  # the exporter raises many types; the user needs the gist
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}") from err
    return onnx.load_from_string(buffer.getvalue())


def build_card(spec: GraphIO, presets: dict[str, InferencePreset], default_preset: str, **fields: Any) -> ModelCard:
    """The one card builder: IO names, kind and size multiple from ``spec``, the presets, and the rest
    (name, scale, schedule, description, training or source, ...) as ModelCard fields."""
    return ModelCard(
        kind=spec.kind, size_multiple=spec.size_multiple, inputs=spec.inputs, outputs=spec.outputs,
        inference_presets=presets, default_preset=default_preset, **fields,
    )


def parity(model: nn.Module, proto: onnx.ModelProto, spec: GraphIO) -> list[dict[str, float | int]]:
    """onnxruntime against PyTorch at two sizes that differ from the traced example (square and
    non-square), batch 2: one entry per size with its max abs diff."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    entries: list[dict[str, float | int]] = []
    for seed, units in ((1, (4, 4)), (2, (3, 5))):
        args = spec.example_inputs(seed=seed, units=units)
        with torch.no_grad():
            expected = model(*args).float().numpy()
        (got,) = session.run(None, {name: a.numpy() for name, a in zip(spec.inputs, args, strict=True)})
        diff = float(np.abs(expected - got).max()) if got.shape == expected.shape else float("inf")
        entries.append({"height": int(args[0].shape[2]), "width": int(args[0].shape[3]), "batch": 2,
                        "max_abs_diff": diff})
    return entries


def write_onnx(proto: onnx.ModelProto, card: ModelCard, out: str | Path) -> Path:
    """Embed the card, check the graph, and write one self-contained file with the atomic writer
    (nothing is left at ``out`` when this fails)."""
    embed_card(proto, card)
    onnx.checker.check_model(proto)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as handle:
        onnx.save_model(proto, handle, save_as_external_data=False)
    return out
