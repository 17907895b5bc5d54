"""The words a model card, the sampler and the exporter's config share: one declaration each.

Each ``Literal`` type has a tuple of its values next to it (taken from the type, so the two cannot
drift), for validation and for argparse ``choices``.
"""

from __future__ import annotations

from typing import Literal, get_args

ModelKind = Literal["sr3", "regression"]
"""An SR3 denoiser for the refinement chain, or a regression model that predicts the HR image."""
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)

OnePassKind = Literal["onepass"]
"""A one-pass upscaler from elsewhere (Real-ESRGAN and its relatives): the LR image in, the HR image out.
The exporter never makes one; its card is written by the app from a test run (``core.model_files.onepass_probe``)."""
CardKind = ModelKind | OnePassKind
"""Every kind a model card may name."""
CARD_KINDS: tuple[str, ...] = (*MODEL_KINDS, *get_args(OnePassKind))

Prediction = Literal["epsilon", "x0", "v"]
"""What the network outputs: eps (the paper), y0, or v = sqrt(g) eps - sqrt(1 - g) y0."""
PREDICTIONS: tuple[str, ...] = get_args(Prediction)

Target = Literal["hr", "residual"]
"""What is diffused / regressed: the HR image (the paper) or the residual HR - condition."""
TARGETS: tuple[str, ...] = get_args(Target)

NoiseConditioning = Literal["gamma", "sqrt_gamma"]
"""What the network's ``noise_level`` input carries: gamma, or sqrt(gamma) as in the paper."""
NOISE_CONDITIONINGS: tuple[str, ...] = get_args(NoiseConditioning)

Condition = Literal["bicubic", "regression"]
"""What the SR3 network sees as lr_up: the bicubic upsample (the paper) or a regression model's output."""
CONDITIONS: tuple[str, ...] = get_args(Condition)

SamplerName = Literal["ddpm", "ddim"]
"""DDPM (paper Alg. 2, ancestral) or DDIM (Song et al. 2021)."""
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)

ChainStart = Literal["noise", "bicubic", "regression"]
"""Where a chain starts: pure noise (the paper), or a noised bicubic / regression estimate."""
CHAIN_STARTS: tuple[str, ...] = get_args(ChainStart)
