"""The reference SR3 implementation's files: its checkpoint pair and its options JSON (with ``//`` comments).

Loading is safe: ``torch.load(..., weights_only=True)`` and nothing else, so a checkpoint that needs
arbitrary unpickling is refused before any of its code can run. Every refusal is a ConvertError
naming the file (or the config key) and why.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr3_desktop.core.errors import SR3Error

NAME = re.compile(r"I(\d+)_E(\d+)(?:_(gen|opt)\.pth)?$")
"""The reference's checkpoint names: I<iteration>_E<epoch>_gen.pth (network) and _opt.pth (training state)."""


class ConvertError(SR3Error):
    """A checkpoint or its config cannot be converted; the message names the file or key and why."""


@dataclass(frozen=True)
class CheckpointFiles:
    """The network file of a checkpoint, and what its name and training-state file say."""

    network: Path
    iteration: int | None
    epoch: int | None


def resolve(path: str | Path) -> CheckpointFiles:
    """``I<iter>_E<epoch>_gen.pth``, its ``_opt.pth``, or the prefix ``I<iter>_E<epoch>`` (as the
    reference's ``resume_state`` names it) -> the ``_gen.pth`` file; any other file is taken as it is."""
    path = Path(path)
    match = NAME.search(path.name)
    network = path
    if match and match.group(3) is None:
        network = path.with_name(path.name + "_gen.pth")
    elif match and match.group(3) == "opt":
        network = path.with_name(path.name[: -len("_opt.pth")] + "_gen.pth")
    if not network.is_file():
        where = f" (looked for {network.name} beside it)" if network != path else ""
        raise ConvertError(f"checkpoint not found: {path}{where}")
    iteration, epoch = (int(match.group(1)), int(match.group(2))) if match else (None, None)
    opt = network.with_name(network.name[: -len("_gen.pth")] + "_opt.pth") if match else None
    if opt is not None and opt.is_file():
        state = safe_load(opt)
        if isinstance(state, dict) and isinstance(state.get("iter"), int) and isinstance(state.get("epoch"), int):
            iteration, epoch = state["iter"], state["epoch"]
    return CheckpointFiles(network, iteration, epoch)


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; a file that needs arbitrary unpickling is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        asks = [line.strip() for line in text.splitlines() if "GLOBAL" in line.upper()]
        if not asks:  # not a pickle that asks for Python objects (globals): other bytes
            raise ConvertError(f"{path} is not a readable PyTorch checkpoint (UnpicklingError)") from None
        what = asks[0]
        raise ConvertError(
            f"refusing to load {path}: it needs arbitrary unpickling (Python objects that could run code"
            f"{'; ' + what[:160] if what else ''}). None of its code ran. Only plain tensors and containers load."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as err:
        raise ConvertError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from None


def network_state(files: CheckpointFiles) -> dict[str, torch.Tensor]:
    """The state dict of the network file: a dict of tensors, else refused with the reason."""
    state = safe_load(files.network)
    name = files.network.name
    if not isinstance(state, dict) or not state:
        raise ConvertError(f"{name} is not a checkpoint: it holds a {type(state).__name__}, not a state dict")
    if "format" in state and "ema" in state:
        raise ConvertError(f"{name} is a checkpoint of this project's own trainer: use `python -m exporter export`")
    if {"optimizer", "iter", "epoch"} <= set(state):
        raise ConvertError(f"{name} is a training-state (_opt.pth) file; point at the _gen.pth file or the prefix")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError(f"{name} is not a state dict of tensors (entry {bad[0]!r})")
    return state


# --- the options JSON ------------------------------------------------------------------------------------
def strip_comments(text: str) -> str:
    """Remove ``//`` comments that are outside JSON strings (the reference's configs carry them)."""
    out, in_string, escaped, i = [], False, False, 0
    while i < len(text):
        char = text[i]
        if in_string:
            escaped = char == "\\" and not escaped
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        out.append(char)
        i += 1
    return "".join(out)


def read_options(path: str | Path) -> dict[str, Any]:
    """The options file as a dict; a missing file or bad JSON is refused with its name."""
    path = Path(path)
    try:
        data = json.loads(strip_comments(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConvertError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConvertError(f"{path.name} is not a readable options JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConvertError(f"{path.name} has no 'model' section: it is not an options file of that implementation")
    return data


def option(data: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at ``model.unet.inner_channel``-style key, or ``default`` when any part is absent."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def reference_betas(schedule: dict[str, Any], key: str) -> tuple[str, np.ndarray]:
    """(kind, betas float64) of a ``beta_schedule`` entry, by the reference's ``make_beta_schedule`` rules."""
    kind = schedule.get("schedule")
    try:
        steps = int(schedule["n_timestep"])
        start, end = float(schedule.get("linear_start", 1e-4)), float(schedule.get("linear_end", 2e-2))
    except (KeyError, TypeError, ValueError):
        raise ConvertError(f"{key} needs n_timestep (and linear_start, linear_end)") from None
    if steps < 1:
        raise ConvertError(f"{key}.n_timestep must be at least 1, got {steps}")
    if kind == "linear":
        return kind, np.linspace(start, end, steps, dtype=np.float64)
    if kind == "quad":
        return kind, np.linspace(start**0.5, end**0.5, steps, dtype=np.float64) ** 2
    if kind in ("warmup10", "warmup50"):  # linear over the first 10 % / 50 %, then constant at linear_end
        betas = np.full(steps, end, dtype=np.float64)
        warm = int(steps * (0.1 if kind == "warmup10" else 0.5))
        betas[:warm] = np.linspace(start, end, warm, dtype=np.float64)
        return kind, betas
    if kind == "const":
        return kind, np.full(steps, end, dtype=np.float64)
    if kind == "jsd":  # 1/T, 1/(T-1), ..., 1
        return kind, 1.0 / np.linspace(steps, 1, steps, dtype=np.float64)
    if kind == "cosine":  # Nichol & Dhariwal 2021, Eq. 17, s = 0.008, clipped at 0.999
        t = np.arange(steps + 1, dtype=np.float64) / steps + 0.008
        f = np.cos(t / 1.008 * np.pi / 2) ** 2
        return kind, np.minimum(1.0 - f[1:] / f[:-1], 0.999)
    raise ConvertError(f"{key}.schedule {kind!r} is not one that implementation knows "
                       "(linear, quad, warmup10, warmup50, const, jsd, cosine)")
