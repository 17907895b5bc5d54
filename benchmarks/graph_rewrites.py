"""A prototype rewrite of the exported SR3 graph, measured by explore_optimisations.py.

It belongs in the exporter (exporter/export/export_onnx.py), not here; this module only shows its gain
on the real graph and checks that the output stays the same. (The attention's Einsum -> MatMul
rewrite is applied in exporter/unet.py: the graph's attention is torch.bmm now.)
  * ``instance_norm_affine``: GroupNorm with one channel per group (C = 32 = groups) is exported
    as Reshape -> InstanceNormalization(1, 0) -> Reshape -> Mul(gamma) -> Add(beta); it is one
    InstanceNormalization(gamma, beta).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:  # the exporter's deduplicated constants
            values[node.output[0]] = values[node.input[0]]
    return values


def instance_norm_affine(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Fold GroupNorm's affine Mul/Add into InstanceNormalization where groups == channels."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts = _constants(out)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in out.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {o: n for n in out.graph.node for o in n.output}
    drop: set[int] = set()
    replace: dict[int, onnx.NodeProto] = {}
    new_inits: list[onnx.TensorProto] = []
    changed = 0
    for node in out.graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        reshape_in = producer.get(node.input[0])
        after = consumers.get(node.output[0], [])
        if reshape_in is None or reshape_in.op_type != "Reshape" or len(after) != 1 or after[0].op_type != "Reshape":
            continue
        reshape_out = after[0]
        nxt = consumers.get(reshape_out.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Mul":
            continue
        mul = nxt[0]
        nxt2 = consumers.get(mul.output[0], [])
        if len(nxt2) != 1 or nxt2[0].op_type != "Add":
            continue
        add = nxt2[0]
        gamma = consts.get(mul.input[1])
        beta = consts.get(add.input[1])
        scale, bias = consts.get(node.input[1]), consts.get(node.input[2])
        if gamma is None or beta is None or scale is None or bias is None:
            continue
        if np.any(scale != 1.0) or np.any(bias != 0.0):  # torch's GroupNorm export: identity norm affine
            continue
        channels = gamma.size
        if scale.size != channels:  # groups != channels: the affine cannot move into the norm
            continue
        base = node.output[0]
        new_inits += [numpy_helper.from_array(gamma.reshape(-1).astype(np.float32), base + "_gamma"),
                      numpy_helper.from_array(beta.reshape(-1).astype(np.float32), base + "_beta")]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        replace[id(node)] = helper.make_node("InstanceNormalization", [reshape_in.input[0], base + "_gamma",
                                             base + "_beta"], [add.output[0]], epsilon=eps)
        drop.update({id(reshape_out), id(mul), id(add)})
        if len(consumers.get(reshape_in.output[0], [])) == 1:
            drop.add(id(reshape_in))
        changed += 1
    nodes = [replace.get(id(n), n) for n in out.graph.node if id(n) not in drop]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    return out, changed
