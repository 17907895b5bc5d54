"""An exported model back in PyTorch: the card gives the U-Net, the ONNX initializers give its weights.

Training state must live in git, and git holds the bundled ``.onnx`` files, not checkpoints, so
``train --init-from MODEL.onnx`` continues from a model's weights through here. The same loader
gives a regression-conditioned SR3 run its frozen regression model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from exporter.unet import UNet, UNetConfig
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import ModelCard, card_from_metadata

_ARCHITECTURE_FIELDS = ("base_channels", "channel_mults", "num_res_blocks", "attention_levels", "dropout",
                        "image_channels", "unshuffle", "full_res_head")


def unet_config_from_card(card: ModelCard, source: str) -> UNetConfig:
    """The U-Net hyper-parameters the card's ``architecture`` records."""
    arch = card.architecture
    missing = [name for name in _ARCHITECTURE_FIELDS[:4] if name not in arch]
    if missing:
        raise ModelError(f"{source}: the card's architecture lacks {', '.join(missing)}, "
                         "so the U-Net cannot be rebuilt")
    return UNetConfig(
        base_channels=int(arch["base_channels"]),
        channel_mults=tuple(int(m) for m in arch["channel_mults"]),
        num_res_blocks=int(arch["num_res_blocks"]),
        attention_levels=tuple(int(level) for level in arch["attention_levels"]),
        dropout=float(arch.get("dropout", 0.0)),
        image_channels=int(arch.get("image_channels", 3)),
        unshuffle=int(arch.get("unshuffle", 1)),
        full_res_head=int(arch.get("full_res_head", 0)),
    )


def load_unet(path: str | Path) -> tuple[UNet, ModelCard]:
    """The U-Net of an exported .onnx file with its weights (float32, eval mode, on the CPU)."""
    source = Path(path).name
    try:
        proto = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except Exception as err:  # onnx raises DecodeError and friends for garbage files
        raise ModelError(f"{source} is not a readable ONNX model ({type(err).__name__})") from None
    card = card_from_metadata({p.key: p.value for p in proto.metadata_props}, source)
    if card.architecture.get("precision") == "fp16":  # its weights are rounded and its graph differs
        raise ModelError(f"{source} is an --fp16 export; start from the float32 export of that checkpoint")
    model = UNet(unet_config_from_card(card, source), conditional=card.kind == "sr3")
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:  # equal constants (untrained GroupNorms) are stored once and shared by Identity
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    weights.update(_group_norm_weights(proto.graph, weights, model))
    state = model.state_dict()
    norms = {f"{n}.{p}" for n in _group_norms_in_call_order(model) for p in ("weight", "bias")}
    missing = [name for name in state if name not in weights]
    if missing:
        raise ModelError(
            f"{source}: {len(missing)} of the U-Net's {len(state)} weights are not in the graph "
            f"(first: {missing[0]}); it was not exported by this exporter's U-Net"
        )
    for name, tensor in state.items():
        array = np.asarray(weights[name], dtype=np.float32).reshape(-1) if name in norms else weights[name]
        array = np.asarray(array, dtype=np.float32)
        if tuple(array.shape) != tuple(tensor.shape):
            raise ModelError(f"{source}: weight {name} has shape {array.shape}, "
                             f"the U-Net expects {tuple(tensor.shape)}")
        state[name] = torch.from_numpy(array.copy())
    model.load_state_dict(state)
    return model.eval(), card


def _group_norms_in_call_order(model: UNet) -> list[str]:
    """The GroupNorm modules' names in the order a forward pass calls them."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules() if isinstance(module, torch.nn.GroupNorm)}
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(names[mod])) for m in names]
    side = 2 * model.config.size_multiple  # 1 x 1 at the bottom fails GroupNorm's one-value-per-group check
    x = torch.zeros(1, model.config.image_channels, side, side)
    try:
        with torch.no_grad():
            model(x, x, torch.full((1,), 0.5)) if model.conditional else model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _group_norm_weights(graph: onnx.GraphProto, weights: dict[str, np.ndarray], model: UNet) -> dict[str, np.ndarray]:
    """GroupNorm scale and shift, which the exporter folds into anonymous (C, 1, 1) initializers.

    torch exports GroupNorm as InstanceNormalization -> Reshape -> Mul(scale) -> Add(shift), in the
    order the forward pass runs, so the n-th such chain belongs to the n-th GroupNorm called.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def next_op(node: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
        found = [c for c in consumers.get(node.output[0], []) if c.op_type == op_type]
        return found[0] if len(found) == 1 else None

    def constant(node: onnx.NodeProto | None) -> str | None:
        names = [n for n in node.input if n in weights] if node is not None else []
        return names[0] if len(names) == 1 else None

    affines: list[tuple[str, str]] = []
    for node in graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        reshape = next_op(node, "Reshape")
        mul = next_op(reshape, "Mul") if reshape is not None else None
        add = next_op(mul, "Add") if mul is not None else None
        scale, shift = constant(mul), constant(add)
        if scale is None or shift is None:
            return {}
        affines.append((scale, shift))
    order = _group_norms_in_call_order(model)
    if len(affines) != len(order):
        return {}
    found: dict[str, np.ndarray] = {}
    for name, (scale, shift) in zip(order, affines, strict=True):
        found[f"{name}.weight"], found[f"{name}.bias"] = weights[scale], weights[shift]
    return found
