"""The SR3 U-Net (Saharia et al., Appendix A): BigGAN-style residual blocks with the noise
embedding added in every block, self-attention at low resolution, 1/sqrt(2) skip rescaling.

SR3 sees concat(lr_up, y_t) plus the noise level; the regression baseline is the same
network on lr_up alone, with no noise input ("Regression models share the same architecture").

With ``unshuffle = s > 1`` the U-Net runs at 1/s of the output resolution: its inputs are
space-to-depth'd (pixel-unshuffle, s^2 x the channels) and its output depth-to-space'd back, inside
the graph, so the model's inputs and outputs stay at the output size (the stem of Real-ESRGAN x2plus;
Hoogeboom et al. 2023 for diffusion). At 4x that cuts a same-width U-Net's FLOPs 16 times.

With ``full_res_head = c > 0`` (and an unshuffle), an output stage at the full resolution follows the
depth-to-space: the last features are shuffled up to c channels, concatenated with the full-resolution inputs,
and two 3x3 convolutions shared by every pixel add a correction (zero-initialised, so a model grown from one
without the stage starts as that model). Every output pixel is then written by the same weights, whatever its
phase in the s x s cell, where a bare depth-to-space writes each of the s^2 phases with its own channel: the
4 px grid of docs/models.md (sub-pixel convolution's checkerboard; Aitken et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

SKIP_SCALE = 1.0 / math.sqrt(2.0)
GROWN_PREFIXES = ("head_",)
"""Weights a model grown from one without them may lack (``train --init-from``): the full-resolution stage."""


@dataclass(frozen=True)
class UNetConfig:
    """U-Net hyper-parameters (paper Table A.1 names: channel dim, depth multipliers, ResNet blocks)."""

    base_channels: int = 64
    """Channels at full resolution."""
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    """Channel multiplier per resolution level; len(mults) - 1 downsamplings."""
    num_res_blocks: int = 2
    """Residual blocks per level on the way down (one more on the way up)."""
    attention_levels: tuple[int, ...] = (-1,)
    """Levels (indices into channel_mults, negative from the bottom) that get self-attention."""
    dropout: float = 0.0
    """Dropout inside residual blocks."""
    image_channels: int = 3
    """Colour channels of lr_up, y_t and the output."""
    unshuffle: int = 1
    """Pixel-unshuffle factor at the input (depth-to-space at the output): the U-Net runs at 1/unshuffle of
    the output resolution. 1: at the output resolution (the paper)."""
    full_res_head: int = 0
    """Channels of the output stage at the full resolution after the depth-to-space (0: none; needs unshuffle > 1)."""

    @property
    def size_multiple(self) -> int:
        return self.unshuffle * 2 ** (len(self.channel_mults) - 1)

    def attention_downsample(self) -> int:
        """The finest downsampling factor, relative to the output, at which the network attends (the
        middle block at least): what bounds the automatic tile size in the app."""
        levels = self.attention_set() | {len(self.channel_mults) - 1}
        return self.unshuffle * 2 ** min(levels)

    def attention_set(self) -> set[int]:
        n = len(self.channel_mults)
        return {lvl % n for lvl in self.attention_levels}


def _zero(conv: nn.Conv2d) -> None:
    """Zero-initialise a layer so its residual branch starts as the identity (as in the paper's U-Net)."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


def noise_features(noise_level: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of a continuous noise level in [0, 1] (as WaveGrad / SR3)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=noise_level.device) / half)
    args = 1000.0 * noise_level.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice; the noise embedding is added after the first conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch) if emb_dim else None
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        _zero(self.conv2)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) * SKIP_SCALE


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions, residual and rescaled by 1/sqrt(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        _zero(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)  # each (b, c, n)
        # Batched matmuls, not einsum: ONNX gets Transpose + MatMul (fast sgemm) instead of Einsum.
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # (b, n_i, n_j)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)  # out[c, i] = sum_j w[i, j] v[c, j]
        return (x + self.proj(out)) * SKIP_SCALE


class Level(nn.Module):
    """Residual blocks of one resolution, each optionally followed by attention."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int | None, dropout: float, attn: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, emb_dim, dropout) for i, o in chans)
        self.attns = nn.ModuleList(SelfAttention(o) if attn else nn.Identity() for _, o in chans)


class UNet(nn.Module):
    """SR3 denoiser (``conditional=True``: 2 images + noise level) or regression net (lr_up only)."""

    def __init__(self, config: UNetConfig, conditional: bool = True) -> None:
        super().__init__()
        self.config = config
        self.conditional = conditional
        ch = config.base_channels
        emb_dim = ch * 4 if conditional else None
        if conditional:
            self.noise_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))  # type: ignore[arg-type]
        in_ch = config.image_channels * (2 if conditional else 1) * config.unshuffle**2
        self.input_conv = nn.Conv2d(in_ch, ch, 3, padding=1)
        attn = config.attention_set()
        widths = [ch * m for m in config.channel_mults]

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_ch = [ch]
        cur = ch
        for lvl, width in enumerate(widths):
            pairs = []
            for _ in range(config.num_res_blocks):
                pairs.append((cur, width))
                cur = width
                skip_ch.append(cur)
            self.down.append(Level(pairs, emb_dim, config.dropout, lvl in attn))
            if lvl < len(widths) - 1:
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skip_ch.append(cur)
        self.mid = Level([(cur, cur), (cur, cur)], emb_dim, config.dropout, attn=False)
        self.mid_attn = SelfAttention(cur)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(widths))):
            pairs = []
            for _ in range(config.num_res_blocks + 1):
                pairs.append((cur + skip_ch.pop(), widths[lvl]))
                cur = widths[lvl]
            self.up.append(Level(pairs, emb_dim, config.dropout, lvl in attn))
            if lvl > 0:
                self.upsample.append(nn.Conv2d(cur, cur, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(cur), cur)
        self.out_conv = nn.Conv2d(cur, config.image_channels * config.unshuffle**2, 3, padding=1)
        _zero(self.out_conv)
        if config.full_res_head > 0 and config.unshuffle > 1:
            c = config.full_res_head
            self.head_features = nn.Conv2d(cur, c * config.unshuffle**2, 1)
            self.head_conv = nn.Conv2d(c + config.image_channels * (2 if conditional else 1), c, 3, padding=1)
            self.head_out = nn.Conv2d(c, config.image_channels, 3, padding=1)
            _zero(self.head_out)

    def forward(
        self, lr_up: torch.Tensor, y_t: torch.Tensor | None = None, noise_level: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = None
        if self.conditional:
            if y_t is None or noise_level is None:
                raise ValueError("an SR3 denoiser needs y_t and noise_level")
            emb = self.noise_mlp(noise_features(noise_level, self.config.base_channels))
            x = torch.cat([lr_up, y_t], dim=1)
            if emb.dtype != x.dtype:  # fp16 export: the embedding is computed in fp32, then cast
                emb = emb.to(x.dtype)
        else:
            x = lr_up
        if self.config.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.config.unshuffle)
        h = self.input_conv(x)
        skips = [h]
        for i, level in enumerate(cast(list[Level], self.down)):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid_attn(self.mid.blocks[0](h, emb))
        h = self.mid.blocks[1](h, emb)
        for i, level in enumerate(cast(list[Level], self.up)):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, skips.pop() * SKIP_SCALE], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        features = F.silu(self.out_norm(h))
        out = self.out_conv(features)
        if self.config.unshuffle == 1:
            return out
        out = F.pixel_shuffle(out, self.config.unshuffle)
        if self.config.full_res_head > 0:
            full = F.silu(F.pixel_shuffle(self.head_features(features), self.config.unshuffle))
            images = [lr_up, y_t] if y_t is not None and self.conditional else [lr_up]
            out = out + self.head_out(F.silu(self.head_conv(torch.cat([full, *images], dim=1))))
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
