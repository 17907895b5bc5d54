"""Multiply-accumulates of an ONNX graph, counted from its Conv, MatMul, Gemm and Einsum nodes.

The graph's dynamic inputs are fixed to concrete sizes and onnx shape inference (with data
propagation, so the attention's Shape -> Reshape chains resolve) gives every tensor's shape.
Attention in the exporter's U-Net is two batched MatMuls (torch.bmm: q^T k and v w^T), counted as
out elements x the shared dimension like every MatMul; graphs exported before that used two Einsum
nodes (``bci,bcj->bij``, ``bij,bcj->bci``), where a contraction costs the product of the sizes of
all its distinct indices. ``attention_macs`` sums both, so either kind of graph reads the same.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import onnx
from onnx import shape_inference


def _fix_inputs(model: onnx.ModelProto, sizes: dict[str, list[int]]) -> None:
    for value in model.graph.input:
        if value.name not in sizes:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, sizes[value.name], strict=True):
            dim.ClearField("dim_param")
            dim.dim_value = size


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    values = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    for node in model.graph.node:  # Constant nodes (e.g. weights folded by the exporter)
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = list(attr.t.dims)
    return shapes


def _einsum_macs(equation: str, operands: list[list[int]]) -> int:
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs, operands, strict=True):
        for letter, size in zip(letters, shape, strict=True):
            sizes[letter] = size
    return math.prod(sizes.values())


def count_macs(path: str | Path, sizes: dict[str, list[int]]) -> Counter[str]:
    """MACs per op type for the given concrete input sizes; raises if a counted node has no shape."""
    model = onnx.load(str(path))
    _fix_inputs(model, sizes)
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    macs: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm", "Einsum"):
            continue
        missing = [n for n in [*node.input[:2], node.output[0]] if n not in shapes]
        if missing:
            raise RuntimeError(f"{node.op_type} {node.name}: no inferred shape for {missing}")
        out = shapes[node.output[0]]
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # (C_out, C_in / group, kh, kw)
            macs["Conv"] += math.prod(out) * math.prod(weight[1:])
        elif node.op_type == "MatMul":
            macs["MatMul"] += math.prod(out) * shapes[node.input[0]][-1]
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            a = shapes[node.input[0]]
            macs["Gemm"] += math.prod(out) * (a[0] if trans_a else a[1])
        else:
            equation = next(a.s.decode() for a in node.attribute if a.name == "equation")
            macs["Einsum"] += _einsum_macs(equation, [shapes[n] for n in node.input])
    return macs


def attention_macs(macs: Counter[str]) -> int:
    """The attention's share of ``count_macs``: every MatMul and Einsum (the time-embedding MLP is Gemm)."""
    return macs["MatMul"] + macs["Einsum"]


def sr3_sizes(height: int, width: int, batch: int = 1) -> dict[str, list[int]]:
    image = [batch, 3, height, width]
    return {"lr_up": image, "y_t": image, "noise_level": [batch]}
