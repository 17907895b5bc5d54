"""`verify model.onnx [--ckpt CKPT]` and `inspect model.onnx`.

verify: onnx.checker, the card against the graph's real inputs / outputs (names, ranks, dynamic
axes), and onnxruntime against PyTorch (max abs diff <= 1e-4 at two sizes, batch 2).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import ModelCard, card_from_metadata

TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2


class VerifyError(ModelError):
    """An exported model failed verification."""


@dataclass
class Report:
    checks: list[str] = field(default_factory=list)
    parity: list[dict[str, float | int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _shape(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def check_graph(proto: onnx.ModelProto, card: ModelCard, report: Report) -> None:
    """The card's IO names match the graph, image tensors are (N, 3, H, W) with dynamic N, H, W."""
    initializers = {i.name for i in proto.graph.initializer}
    inputs = tuple(i.name for i in proto.graph.input if i.name not in initializers)
    outputs = tuple(o.name for o in proto.graph.output)
    if (inputs, outputs) != (tuple(card.inputs), tuple(card.outputs)):
        report.failures.append(f"card says {list(card.inputs)} -> {list(card.outputs)}, graph has "
                               f"{list(inputs)} -> {list(outputs)}")
        return
    values = {v.name: v for v in list(proto.graph.input) + list(proto.graph.output)}
    for name in (*card.inputs, *card.outputs):
        shape = _shape(values[name])
        elem = values[name].type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            report.failures.append(f"{name} is {onnx.TensorProto.DataType.Name(elem)}, expected FLOAT")
        if name == "noise_level":
            ok = len(shape) == 1 and isinstance(shape[0], str)
        else:
            ok = len(shape) == 4 and shape[1] == 3 and all(isinstance(shape[i], str) for i in (0, 2, 3))
        if not ok:
            report.failures.append(f"{name} has shape {shape}; expected dynamic N, H, W")
    if not report.failures:
        report.checks.append(f"graph IO matches the card: {list(inputs)} -> {list(outputs)}, dynamic N/H/W")


def check_parity(path: Path, card: ModelCard, checkpoint: Path | None, report: Report) -> None:
    """onnxruntime vs PyTorch (EMA weights) at two sizes, batch 2; without a checkpoint, ORT runs only."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    torch_model = None
    if checkpoint is not None:
        import torch

        from exporter.export.export_onnx import model_from_checkpoint
        from exporter.training.checkpoint import load_checkpoint

        torch_model, _ = model_from_checkpoint(load_checkpoint(checkpoint))
        torch_model.requires_grad_(False)
    fp16 = card.architecture.get("precision") == "fp16"
    tolerance = FP16_TOLERANCE if fp16 else TOLERANCE
    unit = max(card.size_multiple, 8)  # both sizes differ from the export example (2 x 3 units)
    for height, width in ((4 * unit, 4 * unit), (6 * unit, 3 * unit)):
        rng = np.random.default_rng(height * 1000 + width)
        feeds = {"lr_up": rng.uniform(-1, 1, (2, 3, height, width)).astype(np.float32)}
        if card.kind == "sr3":
            feeds["y_t"] = rng.standard_normal((2, 3, height, width)).astype(np.float32)
            feeds["noise_level"] = np.array([0.05, 0.97], dtype=np.float32)
        (ort_out,) = session.run(None, feeds)
        if ort_out.shape != (2, 3, height, width) or not np.all(np.isfinite(ort_out)):
            report.failures.append(
                f"onnxruntime output at {width}x{height} has shape {ort_out.shape} or non-finite values"
            )
            continue
        entry: dict[str, float | int] = {"height": height, "width": width, "batch": 2,
                                          "output_rms": float(np.sqrt(np.mean(np.square(ort_out))))}
        if torch_model is not None:
            import torch

            args = [torch.from_numpy(feeds[n]) for n in card.inputs]
            expected = torch_model(*args).numpy()
            diff = float(np.abs(expected - ort_out).max())
            entry["max_abs_diff"] = diff
            if diff > tolerance:
                report.failures.append(f"onnxruntime differs from PyTorch by {diff:.3g} at {width}x{height} "
                                       f"(tolerance {tolerance:g})")
        report.parity.append(entry)
    if checkpoint is None:
        report.checks.append("onnxruntime runs at two sizes, batch 2 (no --ckpt: parity with PyTorch not checked)")
    elif not report.failures:
        report.checks.append(f"onnxruntime matches PyTorch within {tolerance:g} at two sizes, batch 2")


def verify(path: str | Path, checkpoint: str | Path | None = None) -> Report:
    """Run every check; failures are collected in the report (nothing is raised for them)."""
    path = Path(path)
    report = Report()
    if not path.is_file():
        raise VerifyError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as err:  # DecodeError, ValidationError, ...
        raise VerifyError(f"{path.name} fails onnx.checker: {type(err).__name__}: {err}") from None
    report.checks.append(f"onnx.checker passes (opset {proto.opset_import[0].version}, IR {proto.ir_version})")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        report.failures.append("the model uses external data; export must write a single file")
    card = card_from_metadata({p.key: p.value for p in proto.metadata_props})
    report.checks.append(f"model card reads: {card.name!r} ({card.kind}, {card.scale}x)")
    check_graph(proto, card, report)
    if report.ok:
        check_parity(path, card, Path(checkpoint) if checkpoint else None, report)
    return report


# --- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the exported .onnx file")
    parser.add_argument("--ckpt", type=Path, help="checkpoint (or run directory) it came from: enables the "
                        "onnxruntime vs PyTorch parity check (max abs diff <= 1e-4)")


def run(args: argparse.Namespace) -> int:
    report = verify(args.model, args.ckpt)
    for line in report.checks:
        print(f"ok    {line}")
    for entry in report.parity:
        diff = f"max abs diff {entry['max_abs_diff']:.2e}, " if "max_abs_diff" in entry else ""
        where = f"batch {entry['batch']} at {entry['width']}x{entry['height']}"
        print(f"      {where}: {diff}output rms {entry['output_rms']:.3g}")
    for line in report.failures:
        print(f"FAIL  {line}")
    print("verify: passed" if report.ok else "verify: FAILED")
    return 0 if report.ok else 1


def inspect_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="an .onnx file written by `python -m exporter export`")
    parser.add_argument("--json", action="store_true", help="print the raw card JSON")


def inspect_run(args: argparse.Namespace) -> int:
    from sr3_desktop.core.model_files.card import read_card

    card = read_card(args.model)
    print(card.to_json() if args.json else format_card(card))
    return 0


def format_card(card: ModelCard) -> str:
    """A readable summary of a card."""
    lines = [f"{card.name}", f"  kind {card.kind}, {card.scale}x, size multiple {card.size_multiple}",
             f"  inputs {list(card.inputs)} -> outputs {list(card.outputs)}"]
    if card.kind == "sr3" and card.train_schedule:
        s = card.train_schedule
        lines.append(f"  predicts {card.prediction}, target {card.target}, noise_level = {card.noise_conditioning}")
        betas = s.betas()
        lines.append(f"  train schedule {s.kind}, T={s.steps}, beta {betas[0]:g}..{betas[-1]:g}")
        lines.append(f"  presets (default {card.default_preset}):")
        for name in card.preset_names():
            p = card.preset(name)
            eta = f" eta {p.eta:g}" if p.sampler == "ddim" else ""
            lines.append(f"    {name:9s} {p.steps:4d} steps, {p.sampler}{eta}, start {p.start} at strength "
                         f"{p.strength:g}, back-projection {p.back_projection}" + p.finish_summary())
            if p.scores:
                lines.append("              " + ", ".join(f"{k} {v:.4g}" for k, v in p.scores.items()))
    else:
        lines.append(f"  predicts y directly (target {card.target})")
    if card.description:
        lines.append(f"  {card.description}")
    if card.source:
        lines.append("  converted from: " + ", ".join(f"{k} {v}" for k, v in card.source.items()))
    sizes = {"native input": card.native_input_size, "fixed tile": card.fixed_tile_size,
             "attention downsample": card.attention_downsample}
    if any(v is not None for v in sizes.values()):
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in sizes.items() if v is not None))
    arch = ", ".join(f"{k} {v}" for k, v in card.architecture.items())
    lines.append(f"  architecture: {arch}")
    training = {k: v for k, v in card.training.items() if k != "credits"}
    lines.append("  training: " + json.dumps(training))
    if card.training.get("credits"):
        lines.append("  data credits: see `inspect --json` (training.credits)")
    if card.metrics:
        lines.append("  metrics: " + json.dumps(card.metrics))
    return "\n".join(lines)
