"""The training loop of `python -m exporter train` (Adam + warm-up, EMA, clipping, autocast, DDP, resume)."""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import sr3_desktop
from exporter.config import (
    ConfigError,
    TrainConfig,
)
from exporter.training import data as data_mod
from exporter.training.adversarial import Adversary
from exporter.training.checkpoint import BEST_NAME, CHECKPOINT_NAME, save_checkpoint
from exporter.training.devices import autocast_dtype, init_distributed, pick_device
from exporter.training.objective import GammaSampler, RegressionCondition, regression_loss, sr3_terms
from exporter.training.onnx_weights import load_unet
from exporter.training.progress_log import JsonlLog, ProgressBar
from exporter.training.tensorboard_events import TensorBoardWriter
from exporter.training.validation import save_grid, validate
from exporter.unet import GROWN_PREFIXES, UNet, count_parameters
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import ModelCard


# Fields that fix what the network computes: a resumed run may not change them.
class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl+C: write a checkpoint and stop."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


# --- the loop ------------------------------------------------------------------------------------
class Trainer:
    def __init__(
        self, config: TrainConfig, data_dir: Path, run_dir: Path, device_name: str = "auto",
        checkpoint: dict[str, Any] | None = None, command: list[str] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.dist = init_distributed(device_name)
        self.device = pick_device(device_name, self.dist.local_rank)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        self.command = list(command or [])
        torch.manual_seed(config.seed)
        self.model = UNet(config.unet, conditional=config.kind == "sr3").to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        self.loss_log: list[list[float]] = []
        self.images_seen = 0
        self.wall_before = 0.0
        self.previous_command: list[str] = []
        self.lineage: list[dict[str, Any]] = []
        self.time_progress = 0.0
        """Fraction of --max-minutes used in this session (0 without a time limit)."""
        self.best_value: float | None = None
        """The best ``keep_best`` validation value so far (kept across --resume)."""
        self.tensorboard_dir: Path | None = None
        """--tensorboard: where the TensorBoard event file goes (None: none)."""
        self.adversary = Adversary(config.critic_lr, self.device, config.seed) if config.adversarial_loss > 0 \
            else None
        self.critic_loss = float("nan")
        """The critic's last loss (log 4 = 1.386 when it cannot tell the photo from the prediction)."""
        if checkpoint:
            self._restore(checkpoint)
        self.train_model: nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.sampler = GammaSampler(config.schedule())
        self.conditioner: RegressionCondition | None = None
        self.condition_name = ""
        if config.condition == "regression":
            regression, card = load_unet(config.condition_model)
            if card.kind != "regression":
                raise ConfigError(f"condition_model {config.condition_model} is a {card.kind} model, "
                                  "not a regression one")
            self.conditioner = RegressionCondition(regression, card.target == "residual").to(self.device)
            self.condition_name = card.name

    def condition(self, lr_up: torch.Tensor) -> torch.Tensor:
        """The SR3 network's lr_up input: the bicubic upsample itself, or the frozen regression's HR estimate."""
        return lr_up if self.conditioner is None else self.conditioner(lr_up)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for group in self.optimizer.param_groups:  # a resumed run may change --lr
                group["initial_lr"] = self.config.lr
        self.step = int(ckpt["step"])
        self.loss_log = [list(map(float, row)) for row in ckpt.get("loss_log", [])]
        self.images_seen = int(ckpt.get("images_seen", 0))
        self.wall_before = float(ckpt.get("wall_seconds", 0.0))
        self.previous_command = [str(c) for c in ckpt.get("command", [])]
        self.lineage = [dict(entry) for entry in ckpt.get("lineage", [])]
        best = ckpt.get("best_value")
        self.best_value = None if best is None else float(best)
        if self.adversary is not None and "adversary" in ckpt:
            self.adversary.load_state_dict(ckpt["adversary"])

    def start_from(self, model: nn.Module, card: ModelCard, path: Path) -> None:
        """--init-from: copy an exported model's weights into the model and its EMA, and record the lineage."""
        own_state = model.state_dict()
        grown = [name for name in self.model.state_dict() if name not in own_state]
        if any(not name.startswith(GROWN_PREFIXES) for name in grown):
            raise ModelError(f"{path.name} lacks weights this run's U-Net needs (first: {grown[0]})")
        self.model.load_state_dict(own_state, strict=not grown)  # a grown head keeps its initialisation
        self.ema.load_state_dict(self.model.state_dict())
        previous = [dict(entry) for entry in card.training.get("lineage", [])]
        own = {key: card.training.get(key) for key in ("steps", "wall_seconds", "images_seen", "command", "device")}
        self.lineage = [*previous, {"model": card.name, "file": path.name, **own}]

    def lr_at(self, step: int) -> float:
        """Linear warm-up to config.lr over warmup_steps, then constant (the paper) or a cosine decay."""
        config = self.config
        warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
        if config.lr_schedule == "constant" or step < config.warmup_steps:
            return config.lr * warm
        progress = min(1.0, (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1))
        progress = max(progress, self.time_progress)  # --max-minutes: the decay ends when the time is up
        floor = config.lr_final_fraction
        return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def ema_decay_at(self, step: int) -> float:
        """EMA decay, ramped up early so a short run's EMA is not stuck near the initial weights."""
        return min(self.config.ema_decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        ema_params: list[torch.Tensor] = list(self.ema.parameters())
        params: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(
        self, lr_up: torch.Tensor, hr: torch.Tensor, generator: torch.Generator, noise_generator: torch.Generator
    ) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        terms = None
        with self.autocast():
            if self.config.kind == "sr3":
                condition = self.condition(lr_up)
                terms = sr3_terms(self.train_model, self.config, self.sampler, condition, hr, generator,
                                  noise_generator)
                loss = terms.loss
                if self.adversary is not None:
                    ramp = min(1.0, (self.adversary.steps + 1) / max(self.config.warmup_steps, 1))
                    loss = loss + ramp * self.config.adversarial_loss * self.adversary.generator_loss(
                        terms.hr_prediction, condition, terms.focus)
            else:
                loss = regression_loss(self.train_model, self.config, lr_up, hr)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.adversary is not None and terms is not None:
            self.critic_loss = self.adversary.update(hr, terms.hr_prediction, condition, terms.focus)
        self.update_ema(self.ema_decay_at(self.step))
        self.step += 1
        return float(loss.detach())

    def checkpoint_payload(self, images: data_mod.ImageSet, wall: float) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.config.kind,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss_log": self.loss_log,
            "images_seen": self.images_seen,
            "wall_seconds": wall,
            "world_size": self.dist.world_size,
            "parameters": count_parameters(self.model),
            "data": {
                "folder": self.data_dir.resolve().name,
                "train_images": images.train_names,
                "val_images": images.val_names,
                "credits": images.credits,
            },
            "command": self.command or self.previous_command,
            "lineage": self.lineage,
            "best_value": self.best_value,
            **({"adversary": self.adversary.state_dict()} if self.adversary is not None else {}),
            "condition_model_name": self.condition_name,
            "device": str(self.device.type),
            "code_version": sr3_desktop.__version__,
        }

    def run(self) -> int:
        """Train until ``steps`` or ``--max-minutes``; Ctrl+C or SIGTERM writes a checkpoint and returns 130."""
        session = _Session(self)
        previous_handler = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
        try:
            session.loop()
        except KeyboardInterrupt:
            if self.dist.main:
                session.save()
                session.bar.message(f"interrupted: checkpoint at step {self.step} written to "
                                    f"{self.run_dir / CHECKPOINT_NAME}")
            return 130
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            if self.dist.world_size > 1:
                torch.distributed.destroy_process_group()
        if self.dist.main:
            session.bar.update(self.step, session.loss_value, 0.0, force=True)
            session.bar.close()
            session.bar.message(f"done: {self.step} steps; checkpoint {self.run_dir / CHECKPOINT_NAME}")
        return 0

    def validate_and_log(self, session: _Session) -> None:
        with self.autocast():
            metrics, output = validate(self.ema, self.config, session.val_batch, self.device)
        grid = save_grid(self.run_dir / f"samples_{self.step:07d}.png", session.val_batch, output, self.config.scale)
        session.log.write({"step": self.step, "validation": metrics, "grid": grid.name, "time": time.time()})
        if session.writer is not None:
            session.writer.scalars(self.step, {f"validation/{k}": v for k, v in metrics.items()})
            session.writer.image(self.step, "validation/samples", grid)
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        session.bar.message(f"validation at step {self.step}: {text}")
        if self.is_best(metrics):
            save_checkpoint(self.run_dir / BEST_NAME, self.checkpoint_payload(session.images, session.wall()))
            session.bar.message(f"best {self.config.keep_best} so far: {self.best_value:.4f}; wrote {BEST_NAME}")

    def is_best(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` improve on the best ``keep_best`` value so far (and remember it)."""
        name = self.config.keep_best
        if not name:
            return False
        sign = -1.0 if name.startswith("-") else 1.0
        value = metrics.get(name.lstrip("-"))
        if value is None:
            raise ConfigError(f"keep_best: no validation metric {name.lstrip('-')!r}; there are {', '.join(metrics)}")
        if self.best_value is not None and sign * value <= sign * self.best_value:
            return False
        self.best_value = value
        return True


class _Session:
    """One call of ``Trainer.run``: the data, the logs and the timers of this training session."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        config = trainer.config
        self.images = data_mod.ImageSet.load(trainer.data_dir, config.crop, config.val_images)
        val_source = self.images.val or self.images.train
        self.val_batch = data_mod.validation_batch(val_source, config.crop, config.scale, config.val_crops)
        self.val_batch["lr_up"] = trainer.condition(self.val_batch["lr_up"].to(trainer.device)).cpu()
        seed = config.seed * 1_000_003 + trainer.dist.rank * 10_007 + trainer.step
        stream = data_mod.CropStream(self.images.train, config.crop, config.scale, config.batch_size, seed,
                                     config.degradation, (config.jpeg_quality_min, config.jpeg_quality_max),
                                     config.second_order)
        self.batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = data_mod.loader(stream, config.workers)
        self.generator = torch.Generator().manual_seed(seed)  # gammas, on the CPU
        self.noise_generator = torch.Generator(device=trainer.device).manual_seed(seed + 1)  # eps, by the model
        self.log = JsonlLog(trainer.run_dir / "log.jsonl")
        self.writer = TensorBoardWriter(trainer.tensorboard_dir) if trainer.tensorboard_dir and trainer.dist.main \
            else None
        self.bar = ProgressBar(config.steps, trainer.step)
        self.start = time.perf_counter()
        self.deadline = self.start + 60.0 * config.max_minutes if config.max_minutes > 0 else float("inf")
        self.loss_value = float("nan")
        self.window_loss, self.window_n, self.data_time, self.step_time = 0.0, 0, 0.0, 0.0
        if trainer.dist.main:
            trainer.run_dir.mkdir(parents=True, exist_ok=True)
            amp = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"
            self.bar.message(
                f"{config.kind} U-Net, {count_parameters(trainer.model) / 1e6:.2f} M parameters, {trainer.device} "
                f"{amp}, {len(self.images.train)} training / {len(self.images.val)} validation images, step "
                f"{trainer.step}/{config.steps}")
            if not self.images.val:
                self.bar.message("warning: no held-out image is large enough; validating on training images")

    def wall(self) -> float:
        return self.trainer.wall_before + time.perf_counter() - self.start

    def save(self) -> None:
        trainer = self.trainer
        save_checkpoint(trainer.run_dir / CHECKPOINT_NAME, trainer.checkpoint_payload(self.images, self.wall()))

    def loop(self) -> None:
        trainer, config, main = self.trainer, self.trainer.config, self.trainer.dist.main
        while trainer.step < config.steps:
            t0 = time.perf_counter()
            if config.max_minutes > 0:
                trainer.time_progress = min(1.0, (t0 - self.start) / (60.0 * config.max_minutes))
            if t0 >= self.deadline:
                if main:
                    self.bar.message(f"--max-minutes {config.max_minutes:g} reached at step {trainer.step}")
                    trainer.validate_and_log(self)
                    self.save()
                return
            lr_up, hr = next(self.batches)
            lr_up, hr = lr_up.to(trainer.device, non_blocking=True), hr.to(trainer.device, non_blocking=True)
            t1 = time.perf_counter()
            self.loss_value = trainer.train_step(lr_up, hr, self.generator, self.noise_generator)
            trainer.images_seen += config.batch_size * trainer.dist.world_size
            self.data_time += t1 - t0
            self.step_time += time.perf_counter() - t0
            self.window_loss += self.loss_value
            self.window_n += 1
            if main:
                self.bookkeeping()

    def bookkeeping(self) -> None:
        """Progress, the loss log, validation and checkpoints after a step (main process only)."""
        trainer, config = self.trainer, self.trainer.config
        step = trainer.step
        share = self.data_time / self.step_time if self.step_time > 0 else 0.0
        self.bar.update(step, self.loss_value, share)
        if step % config.log_every == 0 or step == config.steps:
            mean_loss = self.window_loss / self.window_n
            trainer.loss_log.append([float(step), mean_loss])
            row = {"loss": mean_loss, "lr": trainer.lr_at(step - 1),
                   "it_s": self.window_n / self.step_time if self.step_time else 0.0, "data_share": share}
            if trainer.adversary is not None:
                row["critic_loss"] = trainer.critic_loss
            self.log.write({"step": step, **row, "time": time.time()})
            if self.writer is not None:
                self.writer.scalars(step, {f"train/{k}": v for k, v in row.items()})
            self.window_loss, self.window_n, self.data_time, self.step_time = 0.0, 0, 0.0, 0.0
        if step % config.val_every == 0 or step == config.steps:
            trainer.validate_and_log(self)
        if step % config.checkpoint_every == 0 or step == config.steps:
            self.save()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
