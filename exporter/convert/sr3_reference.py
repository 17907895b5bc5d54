"""The SR3 U-Net of Janspiry/Image-Super-Resolution-via-Iterative-Refinement (``which_model_G: "sr3"``).

Written from the facts of its state dict (names, shapes, layout; tests/fixtures/sr3-reference-8x/README.md),
not from its code. In spandrel's manner: ``detect`` says whether a state dict is this architecture,
``infer`` reads the hyper-parameters the weights tell (widths, channel multipliers, res blocks, where
attention sits), and ``SR3ReferenceUNet`` is the module, whose own state-dict names are the checkpoint's
under ``denoise_fn.`` (so a strict load checks every key and shape).

Graph IO is ours: (lr_up, y_t, noise_level) -> eps, where noise_level is sqrt(gamma) of shape (N,) and the
network sees cat([lr_up, y_t]) (paper Sec. 2.4, WaveGrad's conditioning on the continuous noise level).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

PREFIX = "denoise_fn."
SIGNATURE = ("noise_level_mlp.1.weight", "downs.0.weight", "final_conv.block.3.weight")
"""Keys (under PREFIX) every checkpoint of this architecture has."""


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class LevelEncoding(nn.Module):
    """Sinusoidal encoding of the scalar level l: [sin(l w_k), cos(l w_k)], w_k = exp(-ln(1e4) k / (dim/2))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.count = dim // 2

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        k = torch.arange(self.count, dtype=level.dtype, device=level.device) / self.count
        angles = level[:, None] * torch.exp(-math.log(1e4) * k)[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class Block(nn.Sequential):
    """GroupNorm -> Swish -> Dropout (identity at inference) -> 3x3 conv (parameters at .0 and .3)."""

    def __init__(self, dim: int, dim_out: int, groups: int) -> None:
        super().__init__(nn.GroupNorm(groups, dim), Swish(), nn.Identity(), nn.Conv2d(dim, dim_out, 3, padding=1))


class _Wrapped(nn.Module):
    """Holds ``module`` under ``attr``: reproduces a state-dict name (``block.0``, ``noise_func.0``)."""

    def __init__(self, attr: str, module: nn.Module) -> None:
        super().__init__()
        self.attr = attr
        self.add_module(attr, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attr)(x)  # type: ignore[no-any-return]


class ResnetBlock(nn.Module):
    """h = block1(x) + Linear(emb); h = block2(h); out = h + res_conv(x) (1x1 conv only when widths differ)."""

    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.block1 = _Wrapped("block", Block(dim, dim_out, groups))
        self.block2 = _Wrapped("block", Block(dim_out, dim_out, groups))
        self.noise_func = _Wrapped("noise_func", nn.Sequential(nn.Linear(emb_dim, dim_out)))
        self.res_conv: nn.Module = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.noise_func(emb)[:, :, None, None]
        return self.block2(h) + self.res_conv(x)


class SelfAttention(nn.Module):
    """One head over all positions: softmax(q.k / sqrt(C)) v, a 1x1 conv, plus the input."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        weights = torch.softmax(torch.matmul(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # (n, hw_q, hw_k)
        attended = torch.matmul(v, weights.transpose(1, 2)).reshape(n, c, h, w)
        return self.out(attended) + x


class ResnetBlockWithAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.res_block = ResnetBlock(dim, dim_out, emb_dim, groups)
        self.attn: nn.Module | None = SelfAttention(dim_out, groups) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res_block(x, emb)
        return self.attn(x) if self.attn is not None else x


class Downsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # type: ignore[no-any-return]


class Upsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Hyper:
    """The network's hyper-parameters; everything but ``norm_groups`` is read from the weights."""

    in_channel: int
    out_channel: int
    inner_channel: int
    channel_multiplier: tuple[int, ...]
    res_blocks: int
    attention_levels: tuple[int, ...]
    """Levels (0 = full resolution) whose res blocks attend; the middle block always does."""
    norm_groups: int = 32

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.channel_multiplier) - 1)

    def attn_res(self, image_size: int) -> tuple[int, ...]:
        """The config's ``attn_res`` these levels mean for a network trained at ``image_size``."""
        return tuple(image_size // 2**level for level in self.attention_levels)


class SR3ReferenceUNet(nn.Module):
    """(lr_up, y_t, noise_level = sqrt(gamma)) -> eps, with the reference's state-dict layout under
    ``denoise_fn`` (load the checkpoint's dict as it is, strictly)."""

    def __init__(self, hyper: Hyper) -> None:
        super().__init__()
        self.hyper = hyper
        self.denoise_fn = _Network(hyper)

    def forward(self, lr_up: torch.Tensor, y_t: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        return self.denoise_fn(torch.cat([lr_up, y_t], dim=1), noise_level)  # type: ignore[no-any-return]


class _Network(nn.Module):
    def __init__(self, hyper: Hyper) -> None:
        super().__init__()
        inner, groups, emb = hyper.inner_channel, hyper.norm_groups, hyper.inner_channel
        self.noise_level_mlp = nn.Sequential(LevelEncoding(inner), nn.Linear(inner, 4 * inner), Swish(),
                                             nn.Linear(4 * inner, inner))
        downs: list[nn.Module] = [nn.Conv2d(hyper.in_channel, inner, 3, padding=1)]
        skips, width = [inner], inner
        levels = len(hyper.channel_multiplier)
        for level, mult in enumerate(hyper.channel_multiplier):
            for _ in range(hyper.res_blocks):
                downs.append(ResnetBlockWithAttention(width, inner * mult, emb, groups,
                                                      level in hyper.attention_levels))
                width = inner * mult
                skips.append(width)
            if level < levels - 1:
                downs.append(Downsample(width))
                skips.append(width)
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([ResnetBlockWithAttention(width, width, emb, groups, True),
                                  ResnetBlockWithAttention(width, width, emb, groups, False)])
        ups: list[nn.Module] = []
        for level in reversed(range(levels)):
            for _ in range(hyper.res_blocks + 1):
                out = inner * hyper.channel_multiplier[level]
                ups.append(ResnetBlockWithAttention(width + skips.pop(), out, emb, groups,
                                                    level in hyper.attention_levels))
                width = out
            if level > 0:
                ups.append(Upsample(width))
        self.ups = nn.ModuleList(ups)
        self.final_conv = _Wrapped("block", Block(width, hyper.out_channel, groups))

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        emb = self.noise_level_mlp(level)
        skips = []
        for layer in self.downs:
            x = layer(x, emb) if isinstance(layer, ResnetBlockWithAttention) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, emb)
        for layer in self.ups:
            x = layer(torch.cat([x, skips.pop()], dim=1), emb) if isinstance(layer, ResnetBlockWithAttention) \
                else layer(x)
        return self.final_conv(x)  # type: ignore[no-any-return]


# --- reading the weights -----------------------------------------------------------------------------
class ArchitectureError(ValueError):
    """The state dict is not a consistent network of this architecture."""


def detect(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a GaussianDiffusion state dict around this U-Net."""
    return all(PREFIX + key in state for key in SIGNATURE)


def infer(state: dict[str, torch.Tensor], norm_groups: int) -> Hyper:
    """Widths, channel multipliers, res blocks and attention levels from the ``downs`` weights."""
    first = state[PREFIX + "downs.0.weight"]
    inner, in_channel = int(first.shape[0]), int(first.shape[1])
    out_channel = int(state[PREFIX + "final_conv.block.3.weight"].shape[0])
    indices = sorted({int(m.group(1)) for key in state if (m := re.match(r"denoise_fn\.downs\.(\d+)\.", key))})
    levels: list[list[tuple[int, bool]]] = [[]]  # per level: (width, attends) of each res block
    for index in indices[1:]:
        key = f"{PREFIX}downs.{index}."
        if key + "conv.weight" in state:  # a Downsample closes the level
            levels.append([])
        elif key + "res_block.block1.block.3.weight" in state:
            width = int(state[key + "res_block.block1.block.3.weight"].shape[0])
            levels[-1].append((width, key + "attn.qkv.weight" in state))
        else:
            raise ArchitectureError(f"downs.{index} is neither a res block nor a downsampling conv")
    counts = {len(blocks) for blocks in levels}
    if len(counts) != 1 or 0 in counts:
        raise ArchitectureError(f"the levels have different numbers of res blocks: {[len(b) for b in levels]}")
    mults = []
    for level, blocks in enumerate(levels):
        widths, attends = {w for w, _ in blocks}, {a for _, a in blocks}
        if len(widths) != 1 or len(attends) != 1 or next(iter(widths)) % inner:
            raise ArchitectureError(f"level {level} mixes widths {sorted(widths)} or attention")
        mults.append(next(iter(widths)) // inner)
    attention = tuple(level for level, blocks in enumerate(levels) if blocks[0][1])
    return Hyper(in_channel, out_channel, inner, tuple(mults), counts.pop(), attention, norm_groups)

