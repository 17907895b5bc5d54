"""Training recipes: typed dataclass presets, overridable from a TOML file and from flags.

The paper's Table A.1 rows are here for reference (they need GPUs); the CPU presets train in
hours on 2 cores, and ``tiny`` trains in seconds for tests.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import tomllib

from exporter.unet import UNetConfig
from sr3_desktop.core.diffusion.schedule import ScheduleSpec
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.literals import CONDITIONS, PREDICTIONS, TARGETS
from sr3_desktop.core.literals import MODEL_KINDS as KINDS
from sr3_desktop.core.literals import Condition as ConditionKind
from sr3_desktop.core.literals import ModelKind as Kind
from sr3_desktop.core.literals import Prediction as PredictionKind
from sr3_desktop.core.literals import Target as TargetKind

LossKind = Literal["l1", "l2"]
LossWeighting = Literal["none", "min-snr", "truncated-snr"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

LR_SCHEDULES = ("constant", "cosine")
LOSSES = ("l1", "l2")
LOSS_WEIGHTINGS = ("none", "min-snr", "truncated-snr")
BETA_SCHEDULES = ("linear", "quadratic", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(SR3Error):
    """A training recipe is invalid (unknown preset, bad field, unreadable TOML)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in the checkpoint and (partly) in the model card."""

    # --- model -------------------------------------------------------------------------------
    kind: Kind = "sr3"
    """"sr3" (conditional denoiser, paper) or "regression" (same U-Net on lr_up only)."""
    unet: UNetConfig = field(default_factory=UNetConfig)
    """U-Net hyper-parameters (paper Table A.1)."""
    scale: int = 4
    """Upscaling factor; LR side = crop / scale."""
    # --- diffusion (SR3 only) ----------------------------------------------------------------
    prediction: PredictionKind = "epsilon"
    """What the network predicts: epsilon (paper), x0, or v = sqrt(g) eps - sqrt(1-g) y0."""
    target: TargetKind = "hr"
    """What is diffused / regressed: "hr" (paper) or "residual" = hr - lr_up (SRDiff)."""
    condition: ConditionKind = "bicubic"
    """What the SR3 network sees as its lr_up input, and what a residual target is taken over: the bicubic
    upsample (the paper) or the output of a frozen regression model (predict-and-refine, Whang et al. 2022)."""
    condition_model: str = ""
    """The regression .onnx whose output is the condition when condition = "regression"."""
    loss: LossKind = "l1"
    """L_p norm of the training loss (paper Eq. 6 uses p = 1 or 2)."""
    gradient_loss: float = 0.0
    """Weight of an L1 loss on the image gradients of the predicted HR (true edges, no noise on flat areas)."""
    spectrum_loss: float = 0.0
    """Weight of an L1 loss on log(1 + |FFT|) of the predicted HR against the HR's (the fine band's energy)."""
    texture_loss: float = 0.0
    """Weight of an L1 loss on the local energy of the predicted HR's finest band against the HR's, in 8 px
    cells (exporter/diffusion.py texture_l1): rewards texture where the photo has it, penalises grain on flat
    areas. On the focused samples, as gradient_loss."""
    block_loss: float = 0.0
    """Weight of an L1 loss on the predicted HR's steps across the borders of the unshuffle's cells against the
    HR's (objective.block_l1): a U-Net whose output is depth-to-space'd can buy fine-band energy (which
    texture_loss rewards) with a grid of 4 px cells; this makes the grid cost. On the focused samples."""
    phase_loss: float = 0.0
    """Weight of an L1 loss on how the predicted HR's fine-band energy falls over the unshuffle x unshuffle
    phases of the LR pixels' cells, against the HR's (objective.phase_energy_l1): the cell pattern inside the
    cells that block_loss does not see, and that the grid metric reads. On the focused samples."""
    adversarial_loss: float = 0.0
    """Weight of a conditional patch critic's non-saturating loss on the predicted HR (exporter/training/
    adversarial.py): texture that looks like the photo's, not only as much of it. On the focused samples,
    ramped in over the first warmup_steps of the critic's training."""
    critic_lr: float = 1e-4
    """Adam learning rate of that critic (betas 0.5, 0.999)."""
    focus_fraction: float = 0.0
    """Fraction of SR3 samples whose noise level is drawn log-uniformly in sigma = sqrt((1 - g) / g) over
    [focus_sigma_min, focus_sigma_max] (where the short default chain runs) instead of from p(gamma)."""
    focus_sigma_min: float = 0.01
    """Lower end of the focused sigma range."""
    focus_sigma_max: float = 0.6
    """Upper end of the focused sigma range."""
    start_fraction: float = 0.0
    """Fraction of focused samples whose y_t is what a chain started from the condition really sees:
    sqrt(1 - g) eps with no trace of the residual (train for the chain you run)."""
    loss_weighting: LossWeighting = "none"
    """Loss weight over noise levels: none (plain loss, the paper), min-snr (x0-space weight min(SNR, k),
    Hang et al. 2023), truncated-snr (x0-space weight max(SNR, 1): more effort at high noise, against colour drift)."""
    min_snr_gamma: float = 5.0
    """The clamp k of the "min-snr" weighting (Hang et al. 2023)."""
    beta_schedule: Literal["linear", "quadratic", "cosine"] = "linear"
    """Training beta schedule shape."""
    beta_start: float = 1e-6
    """beta_1 of the training schedule (paper: 1e-6)."""
    beta_end: float = 1e-2
    """beta_T of the training schedule (paper: 1e-2)."""
    timesteps: int = 2000
    """T of the training schedule (paper: 2000)."""
    # --- data --------------------------------------------------------------------------------
    crop: int = 128
    """HR crop side in pixels (must be a multiple of scale * size_multiple)."""
    val_images: int = 2
    """Whole images held out for validation."""
    val_crops: int = 8
    """Validation crops (fixed, deterministic) taken from the held-out images."""
    degradation: float = 0.0
    """Fraction of training crops whose LR is degraded like a real photo (blur, resize kernel, noise, JPEG;
    exporter/training/degrade.py); the rest are the clean bicubic protocol."""
    second_order: float = 0.0
    """Fraction of the degraded crops whose chain runs twice (Real-ESRGAN's second-order degradation)."""
    jpeg_quality_min: int = 30
    """Lowest JPEG quality of a degraded LR."""
    jpeg_quality_max: int = 95
    """Highest JPEG quality of a degraded LR."""
    workers: int = 0
    """DataLoader worker processes (0: load in the training process)."""
    # --- optimisation ------------------------------------------------------------------------
    batch_size: int = 16
    """Images per step (per process under torchrun)."""
    lr: float = 1e-4
    """Adam learning rate after warm-up (paper: 1e-4)."""
    warmup_steps: int = 1000
    """Linear learning-rate warm-up steps."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """After warm-up: constant (the paper) or a cosine decay to lr_final_fraction x lr at ``steps``."""
    lr_final_fraction: float = 0.1
    """Where the cosine decay ends, as a fraction of lr."""
    steps: int = 100_000
    """Total optimisation steps."""
    ema_decay: float = 0.9999
    """EMA decay of the weights; export uses the EMA weights."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    precision: Precision = "auto"
    """auto: bf16 autocast on CPUs with AMX and on CUDA with bf16, else fp16 AMP (CUDA) / fp32."""
    seed: int = 0
    """Seed of the weights, the crops and the noise."""
    # --- bookkeeping -------------------------------------------------------------------------
    checkpoint_every: int = 500
    """Write RUN_DIR/checkpoint.pt every N steps (and on Ctrl+C)."""
    val_every: int = 1000
    """Validate (log.jsonl + samples_STEP.png) every N steps."""
    log_every: int = 50
    """Write the training loss to log.jsonl every N steps."""
    val_sample_steps: int = 10
    """DDIM steps of the short SR3 sampling from pure noise at validation (0: skip sampling)."""
    val_start_sigma: float = 0.0
    """> 0: SR3 validation runs the default one-step chain instead, from the condition noised to this sigma."""
    keep_best: str = ""
    """A validation metric (e.g. psnr_model, or -objective to minimise): whenever it improves, the run also
    writes best.pt (export RUN/best.pt). Empty: keep only the last checkpoint."""
    max_minutes: float = 0.0
    """Stop after this many minutes of training wall time in this session, with a checkpoint (0: no limit)."""

    def schedule(self) -> ScheduleSpec:
        return ScheduleSpec(self.beta_schedule, self.timesteps, self.beta_start, self.beta_end)

    def validate(self) -> TrainConfig:
        """Raise ConfigError with a clear message if any field is out of range."""
        choices = {
            "kind": KINDS, "prediction": PREDICTIONS, "target": TARGETS, "condition": CONDITIONS, "loss": LOSSES,
            "lr_schedule": LR_SCHEDULES,
            "loss_weighting": LOSS_WEIGHTINGS, "beta_schedule": BETA_SCHEDULES, "precision": PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        multiple = self.scale * self.unet.size_multiple
        if self.crop % multiple:
            raise ConfigError(
                f"crop {self.crop} must be a multiple of scale x size_multiple = {self.scale} x "
                f"{self.unet.size_multiple} = {multiple}"
            )
        positive = ("scale", "crop", "batch_size", "steps", "timesteps", "checkpoint_every", "val_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        fractions = (self.degradation, self.second_order, self.focus_fraction, self.start_fraction)
        if not all(0.0 <= f <= 1.0 for f in fractions):
            raise ConfigError("degradation, second_order, focus_fraction and start_fraction are fractions in [0, 1]")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ConfigError(f"need 1 <= jpeg_quality_min <= jpeg_quality_max <= 100, got "
                              f"{self.jpeg_quality_min}..{self.jpeg_quality_max}")
        if not 0.0 < self.focus_sigma_min < self.focus_sigma_max:
            raise ConfigError("need 0 < focus_sigma_min < focus_sigma_max")
        if self.condition == "regression" and (self.kind != "sr3" or not self.condition_model):
            raise ConfigError("condition = regression is for SR3 models and needs condition_model (a regression .onnx)")
        weights = (self.gradient_loss, self.spectrum_loss, self.texture_loss, self.block_loss, self.phase_loss,
                   self.adversarial_loss)
        if min(*weights, self.max_minutes) < 0:
            raise ConfigError("gradient_loss, spectrum_loss, texture_loss, block_loss, phase_loss, adversarial_loss "
                              "and max_minutes must be >= 0")
        if self.adversarial_loss > 0 and self.kind != "sr3":
            raise ConfigError("adversarial_loss is for SR3 models (it judges the denoiser's predicted HR)")
        if self.critic_lr <= 0:
            raise ConfigError(f"critic_lr must be > 0, got {self.critic_lr}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.unet.full_res_head < 0 or (self.unet.full_res_head and self.unet.unshuffle < 2):
            raise ConfigError("unet.full_res_head must be >= 0, and needs unet.unshuffle > 1 (it follows the "
                              "depth-to-space)")
        if self.unet.base_channels % 2:
            raise ConfigError("unet.base_channels must be even (sinusoidal features use half sin, half cos)")
        try:
            self.schedule()
        except ValueError as err:
            raise ConfigError(f"invalid beta schedule: {err}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unet"]["channel_mults"] = list(self.unet.channel_mults)
        data["unet"]["attention_levels"] = list(self.unet.attention_levels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return apply_overrides(cls(), data)


def _unet(**kw: Any) -> UNetConfig:
    return UNetConfig(**kw)


PRESETS: dict[str, TrainConfig] = {
    # Paper Table A.1: Faces 16->128 (and the 64->256 / 64->512 rows share this body).
    "faces-16-128": TrainConfig(
        unet=_unet(base_channels=128, channel_mults=(1, 2, 4, 8, 8), num_res_blocks=3, attention_levels=(-1,)),
        scale=8, crop=128, batch_size=256, lr=1e-4, warmup_steps=10_000, steps=1_000_000,
    ),
    # Paper Table A.1: ImageNet / natural photos 64->256 (4x).
    "photo-64-256": TrainConfig(
        unet=_unet(base_channels=128, channel_mults=(1, 2, 4, 4, 8, 8), num_res_blocks=3, attention_levels=(-1,)),
        scale=4, crop=256, batch_size=256, lr=1e-4, warmup_steps=10_000, steps=1_000_000,
    ),
    # 2 CPU cores, a few hours: small, attention only at the bottom.
    "cpu-small": TrainConfig(
        unet=_unet(base_channels=32, channel_mults=(1, 2, 2, 4), num_res_blocks=1, attention_levels=(-1,)),
        scale=4, crop=64, batch_size=16, lr=5e-4, warmup_steps=500, steps=20_000, ema_decay=0.999,
        checkpoint_every=500, val_every=1000, val_sample_steps=10,
    ),
    # Slightly wider CPU model for an overnight run.
    "cpu-medium": TrainConfig(
        unet=_unet(base_channels=48, channel_mults=(1, 2, 2, 4), num_res_blocks=2, attention_levels=(-1,)),
        scale=4, crop=64, batch_size=16, lr=3e-4, warmup_steps=1000, steps=50_000, ema_decay=0.999,
        checkpoint_every=500, val_every=2000, val_sample_steps=10,
    ),
    # Tests: trains and exports in seconds.
    "tiny": TrainConfig(
        unet=_unet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(-1,)),
        scale=4, crop=32, batch_size=4, lr=1e-3, warmup_steps=2, steps=4, ema_decay=0.9, val_images=1,
        val_crops=2, checkpoint_every=2, val_every=4, log_every=1, val_sample_steps=2, precision="fp32",
    ),
}


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


_UNET_FIELDS = {f.name: f for f in fields(UNetConfig)}
_TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _coerce(name: str, value: Any, like: Any) -> Any:
    """Convert a TOML/CLI value to the type of the default ``like``."""
    try:
        if isinstance(like, bool):
            return bool(value)
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
        if isinstance(like, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(v) for v in items if str(v).strip() != "")
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot use {value!r} (expected {type(like).__name__})") from None


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return ``config`` with fields replaced; U-Net fields may sit in a "unet" table or at top level."""
    unet_changes: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name == "unet" and isinstance(value, dict):
            for sub, sub_value in value.items():
                sub_name = sub.replace("-", "_")
                if sub_name not in _UNET_FIELDS:
                    raise ConfigError(f"unknown U-Net field {sub!r}; known: {', '.join(_UNET_FIELDS)}")
                unet_changes[sub_name] = _coerce(sub_name, sub_value, getattr(config.unet, sub_name))
        elif name in _UNET_FIELDS:
            unet_changes[name] = _coerce(name, value, getattr(config.unet, name))
        elif name in _TRAIN_FIELDS:
            changes[name] = _coerce(name, value, getattr(config, name))
        else:
            raise ConfigError(f"unknown config field {key!r}")
    if unet_changes:
        changes["unet"] = replace(config.unet, **unet_changes)
    return replace(config, **changes)


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (used as --help text, one source of truth)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
