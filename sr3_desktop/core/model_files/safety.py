"""Checks an untrusted ``.onnx`` file before any onnxruntime session is created.

A model from a stranger must not read files outside its folder (external data through absolute
paths, "..", symlinks or hardlinks), must not need a custom-op library (only the standard ONNX
operator domains are accepted, so no library is ever registered), must use only the operators
of the exporter's U-Nets (``ALLOWED_OPERATORS``: no control flow, so no graph can run without
end), and must parse as ONNX. The file is parsed without touching external data. Signature
checks against the model card happen later, in the denoiser; the time-limited test run of an
imported or ``--model`` file is ``model_probe``'s.

A single-file model in a model folder (bundled, or imported) that passed is remembered by its SHA-256
and the rules it passed (``<data folder>/safe-models.json``), so the next start hashes it (tens of ms)
instead of importing ``onnx`` and parsing it again (about a second, more than the bundled networks' own
run). Files from anywhere else are checked in full every time, and leave nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.imageio.atomic import sha256_of
from sr3_desktop.core.model_files.folders import in_model_folders, read_records, remember_record

if TYPE_CHECKING:
    import onnx

MAX_MODEL_BYTES = 2 * 1024**3
"""2 GiB: the protobuf limit for a single-file model; larger files are refused unread."""
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
"""Standard ONNX operators only; "com.microsoft" contrib ops come from ORT's optimiser, not exporters."""
OPERATOR_DOMAINS = frozenset({"", "ai.onnx"})
"""The domain of ``ALLOWED_OPERATORS``: the default ONNX domain (an ``ai.onnx.ml`` node is refused by name)."""
ALLOWED_OPERATORS = frozenset({
    # What the exporter's U-Nets hold today, read off the bundled sr3-photo-4x and regression-photo-4x
    # (TorchScript export, opset 17; tests/core/test_model_safety.py checks both against this list):
    "Conv",                          # every convolution, the stride-2 downsampling included
    "InstanceNormalization",         # GroupNorm, exported as InstanceNorm over the reshaped groups
    "Add", "Mul", "Div", "Sigmoid",  # residual sums, GroupNorm's affine, SiLU = x * sigmoid(x), skip scale
    "MatMul", "Softmax",             # self-attention
    "Resize",                        # the nearest-neighbour 2x upsampling
    "Reshape", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Split", "Transpose", "Constant",
                                     # dynamic N/H/W shape arithmetic, the qkv split, skip concatenation
    "Gemm", "Sin", "Cos", "Cast",    # SR3 only: the sinusoidal noise-level embedding and its MLP
    # fp16 exports (export --fp16) add only Cast, between the float16 body and the float32 IO and noise
    # level (listed above). Exports at opset 18 (export --opset 18) and torch's dynamo exporter decompose
    # the same layers differently, and a later U-Net may add layers; each is a plain tensor function:
    "GroupNormalization",            # opset 18+: GroupNorm as one operator
    "LayerNormalization",            # transformer-style attention blocks (opset 17+)
    "ReduceMean", "ReduceSum", "ReduceMax", "Sub", "Pow", "Sqrt", "Reciprocal", "Neg", "Exp",
                                     # norms and softmax written out: mean, variance, rsqrt, max-shift
    "Gelu", "Erf", "Tanh",           # GELU (opset 20, else its erf or tanh form); Mish/tanh activations
    "Relu", "LeakyRelu", "Softplus", "Clip", "Min", "Max", "Abs",
                                     # other activations, clamps and the numerically safe max(x, eps)
    "Einsum",                        # attention written as an einsum
    "ConvTranspose", "DepthToSpace", "SpaceToDepth", "AveragePool", "MaxPool",
                                     # learned / pixel-shuffle upsampling, pooled downsampling
    "Pad", "Slice", "Expand", "ConstantOfShape", "Range", "Equal", "Where", "Flatten", "Identity",
                                     # reflect padding, crops, broadcasting and the shape code of dynamic
                                     # axes (torch emits ConstantOfShape/Equal/Where for a dynamic expand),
                                     # Identity for renamed outputs
    "Dropout",                       # kept as an inference-mode identity by some exporters
    "BatchNormalization",            # a U-Net variant with BatchNorm (inference form)
    "DequantizeLinear",              # int8 weight storage for a smaller bundle
    # One-pass upscalers from elsewhere (core/model_files/onepass_probe.py; Real-ESRGAN's RRDBNet needs nothing new:
    # Conv, LeakyRelu, Add, Mul, Resize, Concat):
    "PRelu",                         # SRVGGNetCompact (realesr-general-x4v3, realesr-animevideov3), EDSR-style nets
})
"""The only operators a model may use. Control flow (``Loop``, ``Scan``, ``If``), sequences, random
and string operators and everything else are refused: a U-Net never needs them, and a ``Loop`` with an
enormous trip count would run forever."""


CHECK_VERSION = 1
"""Bump when a check changes, so that every remembered verdict is reached again."""


SAFE_FILE = "safe-models.json"
MAX_SAFE = 64
"""Verdicts kept: the newest 64 files."""


def _rules_digest() -> str:
    """What a verdict depends on besides the bytes: the rules it was reached under."""
    rules = json.dumps([CHECK_VERSION, sorted(ALLOWED_DOMAINS), sorted(OPERATOR_DOMAINS), sorted(ALLOWED_OPERATORS),
                        MAX_MODEL_BYTES])
    return hashlib.sha256(rules.encode()).hexdigest()


def check_onnx_file(path: str | os.PathLike[str]) -> None:
    """Raise ``ModelError`` (with an actionable message) unless ``path`` is a safe ONNX model.

    A model-folder file whose exact bytes passed before under the same rules, with no external data,
    passes at once."""
    model_path = Path(path)
    name = model_path.name or str(model_path)
    size = _checked_size(model_path, name)
    if not in_model_folders(model_path):
        _check_parsed(model_path, name, size)
        return
    try:
        verdict: dict[str, object] = {"sha256": sha256_of(model_path), "size": size, "rules": _rules_digest()}
    except OSError as exc:
        raise ModelError(f"The model file {name} cannot be read: {exc.strerror or exc}.") from exc
    if verdict in read_records(SAFE_FILE):
        return
    if _check_parsed(model_path, name, size):
        remember_record(SAFE_FILE, verdict, MAX_SAFE, verdict.__eq__)  # not remembered: checked in full next time


def _check_parsed(model_path: Path, name: str, size: int) -> bool:
    """The full check on the parsed file; returns whether its verdict may be remembered (no external data,
    whose files can change without the model's bytes changing)."""
    import onnx  # here, not at the top: about a second, which a remembered verdict never pays

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, UnicodeDecodeError, ...: all mean "not ONNX"
        raise ModelError(f"{name} is not a valid ONNX model: the file is truncated or damaged "
                         f"({_brief(exc)}).") from exc
    if size == 0 or model.ir_version <= 0 or len(model.graph.node) == 0 or len(model.opset_import) == 0:
        raise ModelError(f"{name} is not a valid ONNX model: it has no graph (the file is truncated or damaged).")
    _check_domains(model, name)
    _check_operators(model, name)
    external = _check_external_data(model, model_path, name)
    try:
        onnx.checker.check_model(str(model_path))  # by path, so external data resolves from its folder
    except Exception as exc:
        raise ModelError(f"{name} is not a valid ONNX model: {_brief(exc)}") from exc
    return not external


def _brief(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _checked_size(model_path: Path, name: str) -> int:
    try:
        info = model_path.stat()
    except FileNotFoundError as exc:
        raise ModelError(f"The model file {name} was not found.") from exc
    except OSError as exc:
        raise ModelError(f"The model file {name} cannot be read: {exc.strerror or exc}.") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{name} is not a regular file, so it cannot be a model.")
    if info.st_size > MAX_MODEL_BYTES:
        raise ModelError(f"{name} is {info.st_size / 1024**3:.1f} GiB, over the {MAX_MODEL_BYTES / 1024**3:.0f} GiB "
                         "limit for model files.")
    return info.st_size


# ----------------------------------------------------------------------------------------------
# Operator domains


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph inside its nodes' attributes (If, Loop, Scan bodies)."""
    yield graph
    yield from _subgraphs(graph.node)


def _subgraphs(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.GraphProto]:
    """Every graph held in the nodes' attributes, recursively."""
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _all_graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    yield from _graphs(model.graph)
    for info in model.training_info:
        yield from _graphs(info.initialization)
        yield from _graphs(info.algorithm)
    for function in model.functions:
        yield from _subgraphs(function.node)


def _refuse_domain(name: str, domain: str, where: str) -> ModelError:
    return ModelError(f"{name} uses operators from the custom domain '{domain}' ({where}). Only standard ONNX "
                      "operators are allowed, so no custom-operator library is ever loaded; re-export the model "
                      "without custom operators.")


def _check_domains(model: onnx.ModelProto, name: str) -> None:
    for opset in model.opset_import:
        if opset.domain not in ALLOWED_DOMAINS:
            raise _refuse_domain(name, opset.domain, "opset import")
    for function in model.functions:
        if function.domain not in ALLOWED_DOMAINS:
            raise _refuse_domain(name, function.domain, f"function '{function.name}'")
        for node in function.node:
            if node.domain not in ALLOWED_DOMAINS:
                raise _refuse_domain(name, node.domain, f"node '{node.name}' of type {node.op_type}")
    for graph in _all_graphs(model):
        for node in graph.node:
            if node.domain not in ALLOWED_DOMAINS:
                raise _refuse_domain(name, node.domain, f"node '{node.name}' of type {node.op_type}")


def _check_operators(model: onnx.ModelProto, name: str) -> None:
    """Refuse every operator outside ``ALLOWED_OPERATORS``, in every graph, subgraph and function."""
    counts: Counter[str] = Counter()
    nodes = [node for graph in _all_graphs(model) for node in graph.node]
    nodes += [node for function in model.functions for node in function.node]
    for node in nodes:
        if node.domain not in OPERATOR_DOMAINS or node.op_type not in ALLOWED_OPERATORS:
            counts[f"{node.domain}.{node.op_type}" if node.domain not in OPERATOR_DOMAINS else node.op_type] += 1
    if counts:
        found = ", ".join(f"{op} ({n} node{'s' if n > 1 else ''})" for op, n in sorted(counts.items()))
        raise ModelError(f"{name} is refused: it uses the operator{'s' if len(counts) > 1 else ''} {found}, which "
                         "SR3 models do not need. Only the operators of the exporter's U-Nets are allowed (no control "
                         "flow such as Loop, Scan or If), so that no model can run without end; re-export it with "
                         "`python -m exporter export`.")


# ----------------------------------------------------------------------------------------------
# External data


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node)


def _attribute_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        for sparse in attribute.sparse_tensors:
            yield sparse.values
            yield sparse.indices


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _all_graphs(model):
        yield from _tensors(graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node)


def _check_external_data(model: onnx.ModelProto, model_path: Path, name: str) -> bool:
    """Check every external-data reference; returns whether there is any."""
    import onnx

    folder = model_path.parent.resolve()
    external = False
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        external = True
        entries = {entry.key: entry.value for entry in tensor.external_data}
        _check_location(entries.get("location", ""), folder, name, tensor.name, entries)
    return external


def _check_location(location: str, folder: Path, name: str, tensor: str, entries: dict[str, str]) -> None:
    def refuse(reason: str) -> ModelError:
        return ModelError(f"{name} is refused: the weights of tensor '{tensor}' are stored in an external file "
                          f"'{location}' that {reason}. External data must be a plain file inside the model's folder.")

    parts = location.replace("\\", "/").split("/")
    if not location:
        raise refuse("has no name")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise refuse("is an absolute path")
    if ".." in parts:
        raise refuse("climbs out of the folder with '..'")
    current = folder
    for part in (p for p in parts if p not in ("", ".")):
        current = current / part
        if current.is_symlink():
            raise refuse("goes through a symbolic link")
    try:
        resolved = current.resolve(strict=True)
        info = os.stat(current, follow_symlinks=False)
    except (OSError, RuntimeError) as exc:
        raise refuse("is missing") from exc
    if not resolved.is_relative_to(folder):
        raise refuse("lies outside the model's folder")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file")
    if info.st_nlink > 1:
        raise refuse("is a hard link to another file")
    try:
        end = int(entries.get("offset", "0") or 0) + int(entries.get("length", "0") or 0)
    except ValueError as exc:
        raise refuse("has a malformed offset or length") from exc
    if end > info.st_size:
        raise refuse("is shorter than the model says (truncated)")
