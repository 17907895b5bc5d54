"""The model card: a JSON document stored in the ONNX metadata entry ``sr3.model_card``.

Both halves read and write it only through this module. The app judges a model by its
card, and then checks the session's real inputs and outputs against it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sr3_desktop.core.diffusion.schedule import ScheduleError, ScheduleSpec, validate_levels
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.literals import (
    CARD_KINDS,
    CHAIN_STARTS,
    CONDITIONS,
    NOISE_CONDITIONINGS,
    PREDICTIONS,
    SAMPLER_NAMES,
    TARGETS,
    CardKind,
    ChainStart,
    Condition,
    NoiseConditioning,
    Prediction,
    SamplerName,
    Target,
)
from sr3_desktop.core.model_files.onnx_metadata import MetadataError, read_metadata

CARD_METADATA_KEY = "sr3.model_card"
SCHEMA_VERSION = 6
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5, 6)
"""Version 2 added the optional attention_downsample, native_input_size, fixed_tile_size, source and probe
(the one-pass kind; and the "explicit" train schedule); version 3 the presets' texture_gain and deblock; version 4
their flat_amplitude; version 5 compressed_preset; version 6 the presets' grain. An older card reads as one with
those at their defaults."""
FLAT_AMPLITUDE = 5e-4
"""The texture cap's knee (``upscale.texture_cap``) of a preset that names none: an anchor fine band below this
amplitude (about 1/8 of an 8-bit level, a surface the input shows as exactly flat) supports less invented
detail, by the square of the shortfall."""

SR3_INPUTS = ("lr_up", "y_t", "noise_level")
SR3_OUTPUTS = ("prediction",)
REGRESSION_INPUTS = ("lr_up",)
REGRESSION_OUTPUTS = ("y",)
ONEPASS_RANGES = ((0.0, 1.0), (-1.0, 1.0))
"""The input (and output) ranges a one-pass upscaler may take; its test run tells which."""
PRESET_ORDER = ("fast", "balanced", "quality", "compressed")
COMPRESSED_QUALITY = 90
"""JPEG qualities up to this one read as compressed: the fine band holds quantisation, not the photo's detail."""


class ModelCardError(ModelError, ValueError):
    """The model card is missing, malformed or from an unsupported schema."""


@dataclass(frozen=True)
class InferencePreset:
    """One way to sample an SR3 model; ``quality`` is the paper's full chain from noise."""

    steps: int
    """Number of reverse steps (network evaluations of the denoiser)."""
    noise_levels: tuple[float, ...]
    """The chain's gammas in sampling order (noisiest first); the last step goes to gamma = 1."""
    sampler: SamplerName = "ddpm"
    """"ddpm" (paper Alg. 2, ancestral) or "ddim" (Song et al. 2021)."""
    eta: float = 0.0
    """DDIM stochasticity in [0, 1]; 1 matches DDPM's posterior variance. Ignored by "ddpm"."""
    start: ChainStart = "noise"
    """Where the chain starts: pure noise (the paper) or a noised bicubic / regression estimate."""
    strength: float = 1.0
    """Fraction of the training chain that is run; the start estimate is noised to that level."""
    back_projection: int = 0
    """Iterations of y += up(LR - down(y)) after sampling; 0 turns it off."""
    texture_cap: float = 0.0
    """Added detail at most this many times its anchor's local fine-band energy (``upscale.texture_cap``),
    before back-projection; 0 turns it off."""
    texture_gain: float = 1.0
    """Added detail amplified up to this factor where ``texture_cap`` leaves room (everywhere without a cap);
    1 keeps it as sampled."""
    flat_amplitude: float = FLAT_AMPLITUDE
    """The cap's knee: where the anchor's local fine-band amplitude is below it, the cap shrinks by the square of
    the shortfall (``upscale.texture_cap``), so flat areas stay flat; a larger knee keeps more of them flat."""
    grain: float = 0.0
    """The grain floor (``upscale.grain_floor``), as a multiple of the input's noise amplitude: where the output's
    local fine-band amplitude is below it, white luma grain lifts it there, before back-projection; 0 turns it
    off."""
    deblock: bool = False
    """Smooth the added detail across the borders of the U-Net's depth-to-space cells first
    (``upscale.texture_cap.smooth_cell_borders``); a no-op for a model without an unshuffle."""
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "train_subsequence"})
    """How ``noise_levels`` was made, so the app can rebuild it for other steps or strength."""
    description: str = ""
    """One sentence a user can read in the app."""
    scores: dict[str, float] = field(default_factory=dict)
    """Validation scores that chose this preset (PSNR-Y, SSIM-Y, consistency, ...)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ModelCardError(f"preset needs at least one step, got {self.steps}")
        if len(self.noise_levels) != self.steps:
            raise ModelCardError(
                f"preset lists {len(self.noise_levels)} noise levels but says steps={self.steps}"
            )
        try:
            validate_levels(list(self.noise_levels))  # type: ignore[arg-type]
        except ScheduleError as err:
            raise ModelCardError(f"preset noise levels are invalid: {err}") from None
        if self.sampler not in SAMPLER_NAMES:
            raise ModelCardError(f"unknown sampler {self.sampler!r}; expected 'ddpm' or 'ddim'")
        if not 0.0 <= self.eta <= 1.0:
            raise ModelCardError(f"eta must be in [0, 1], got {self.eta}")
        if self.start not in CHAIN_STARTS:
            raise ModelCardError(f"unknown chain start {self.start!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ModelCardError(f"strength must be in (0, 1], got {self.strength}")
        if self.back_projection < 0:
            raise ModelCardError("back_projection must be >= 0")
        if not (math.isfinite(self.texture_cap) and self.texture_cap >= 0.0):
            raise ModelCardError(f"texture_cap must be a finite number >= 0, got {self.texture_cap}")
        if not (math.isfinite(self.texture_gain) and self.texture_gain > 0.0):
            raise ModelCardError(f"texture_gain must be a finite number > 0, got {self.texture_gain}")
        if not (math.isfinite(self.flat_amplitude) and self.flat_amplitude > 0.0):
            raise ModelCardError(f"flat_amplitude must be a finite number > 0, got {self.flat_amplitude}")
        if not (math.isfinite(self.grain) and self.grain >= 0.0):
            raise ModelCardError(f"grain must be a finite number >= 0, got {self.grain}")
        if not isinstance(self.deblock, bool):
            raise ModelCardError(f"deblock must be true or false, got {self.deblock!r}")

    def finish_summary(self) -> str:
        """The texture cap (and its knee), gain, deblocking and grain floor of the last prediction, for listings
        ("" when none)."""
        knee = f" (knee {self.flat_amplitude:g})" if self.texture_cap and self.flat_amplitude != FLAT_AMPLITUDE else ""
        return ((f", texture cap {self.texture_cap:g}{knee}" if self.texture_cap else "")
                + (f", texture gain {self.texture_gain:g}" if self.texture_gain != 1.0 else "")
                + (", deblocked" if self.deblock else "")
                + (f", grain floor {self.grain:g}x the input's noise" if self.grain else ""))

    @property
    def network_evaluations(self) -> int:
        """Denoiser calls, plus one regression call when the chain starts from regression."""
        return self.steps + (1 if self.start == "regression" else 0)


@dataclass(frozen=True)
class ModelCard:
    """Everything the app needs to run a model, and what a user needs to trust it."""

    name: str
    """Human-readable model name, unique among installed models."""
    kind: CardKind
    """"sr3" (a denoiser for the refinement chain), "regression" (predicts y from lr_up) or "onepass" (an
    upscaler from elsewhere: the LR image at its own size in, the image at ``scale`` out;
    ``core.model_files.onepass_probe``)."""
    scale: int
    """Upscaling factor: output side = scale * input side."""
    size_multiple: int
    """H and W fed to the network must be multiples of this (unshuffle x 2 ** (levels - 1)); for a one-pass
    model, of the input image (1, or 8 when its test run failed at an odd size)."""
    inputs: tuple[str, ...]
    """Graph input names, in order: lr_up, y_t, noise_level (SR3), lr_up (regression), the graph's own (one-pass)."""
    outputs: tuple[str, ...]
    """Graph output names: prediction (SR3), y (regression), the graph's own (one-pass)."""
    prediction: Prediction = "epsilon"
    """What the SR3 network predicts: epsilon (the paper), x0 or v. Regression: x0."""
    target: Target = "hr"
    """What is diffused / regressed: the HR image (the paper) or the residual HR - bicubic."""
    noise_conditioning: NoiseConditioning = "sqrt_gamma"
    """What ``noise_level`` carries: gamma, or sqrt(gamma) as in the paper."""
    condition: Condition = "bicubic"
    """What the SR3 input lr_up carries, and what a residual target is taken over: the bicubic upsample
    (the paper), or the output of the regression model ``condition_model`` (predict-and-refine)."""
    condition_model: str = ""
    """The name of the regression model whose output is the condition when condition = "regression"."""
    value_range: tuple[float, float] = (-1.0, 1.0)
    """Pixel range of lr_up, y_t and outputs: [-1, 1]; a one-pass model's input and output: [0, 1] or [-1, 1],
    as its test run found."""
    train_schedule: ScheduleSpec | None = None
    """The training beta schedule (SR3 only)."""
    inference_presets: dict[str, InferencePreset] = field(default_factory=dict)
    """Named sampling recipes: fast / balanced / quality (SR3 only)."""
    default_preset: str = "balanced"
    """The preset the app selects first."""
    compressed_preset: str = ""
    """The preset that stands in for the default on an input saved as JPEG at a quality of at most
    ``COMPRESSED_QUALITY`` (``run_models.preset_name``); empty: the default for every input."""
    description: str = ""
    """Free text for the details pane."""
    training: dict[str, Any] = field(default_factory=dict)
    """Data, credits, steps, wall time, code version and the recipe command."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The exporter's evaluation results."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """U-Net hyper-parameters and parameter count (informational)."""
    attention_downsample: int | None = None
    """The finest downsampling factor, relative to the output resolution, at which the network runs
    self-attention; None: derived from ``architecture`` (our own U-Net's settings)."""
    native_input_size: int | None = None
    """The LR side (px) the model was trained on (the reference SR3's ``l_resolution``); the app warns
    when an input is far from it. None: trained on crops of any size."""
    fixed_tile_size: int | None = None
    """Output side (px) of the training images of a network whose self-attention spans the whole
    feature map (the reference SR3's ``image_size``): tiles are exactly this size, or the image is not
    tiled. None: any tile size that is a multiple of ``size_multiple``."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where a converted model came from: ``implementation``, ``file``, ``iteration``, ``epoch``.
    Empty for models trained by this project's exporter (their story is in ``training``)."""
    probe: dict[str, Any] = field(default_factory=dict)
    """One-pass only: what its test run found and how (the source file and its SHA-256, the test image's size,
    the output's, and each candidate range's consistency error). The one interface the app infers."""
    schema_version: int = SCHEMA_VERSION
    """Card format version (written: SCHEMA_VERSION; read: READABLE_SCHEMA_VERSIONS)."""

    def __post_init__(self) -> None:
        if self.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise ModelCardError(
                f"model card schema_version {self.schema_version} is not supported by this version "
                f"of SR3 Desktop (it reads versions {list(READABLE_SCHEMA_VERSIONS)}); update the app or "
                "re-export the model"
            )
        for name in ("attention_downsample", "native_input_size", "fixed_tile_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ModelCardError(f"{name} must be a positive integer or absent, got {value!r}")
        if self.fixed_tile_size is not None and self.fixed_tile_size % self.size_multiple:
            raise ModelCardError(f"fixed_tile_size {self.fixed_tile_size} is not a multiple of "
                                 f"size_multiple {self.size_multiple}")
        if not self.name.strip():
            raise ModelCardError("model card has an empty name")
        if self.kind not in CARD_KINDS:
            raise ModelCardError(f"model kind must be 'sr3', 'regression' or 'onepass', got {self.kind!r}")
        if self.scale < 1 or self.scale > 16:
            raise ModelCardError(f"scale must be between 1 and 16, got {self.scale}")
        if self.size_multiple < 1:
            raise ModelCardError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if self.prediction not in PREDICTIONS:
            raise ModelCardError(f"unknown prediction {self.prediction!r}; expected epsilon, x0 or v")
        if self.target not in TARGETS:
            raise ModelCardError(f"unknown target {self.target!r}; expected 'hr' or 'residual'")
        if self.noise_conditioning not in NOISE_CONDITIONINGS:
            raise ModelCardError(f"unknown noise_conditioning {self.noise_conditioning!r}")
        if self.condition not in CONDITIONS:
            raise ModelCardError(f"unknown condition {self.condition!r}; expected 'bicubic' or 'regression'")
        if self.condition == "regression" and (self.kind != "sr3" or not self.condition_model.strip()):
            raise ModelCardError("a regression condition is for SR3 models and needs condition_model (a model name)")
        if self.kind == "onepass":
            self._check_onepass()
            return
        if tuple(self.value_range) != (-1.0, 1.0):
            raise ModelCardError(f"value_range must be [-1, 1], got {list(self.value_range)}")
        expected = (SR3_INPUTS, SR3_OUTPUTS) if self.kind == "sr3" else (REGRESSION_INPUTS, REGRESSION_OUTPUTS)
        if (tuple(self.inputs), tuple(self.outputs)) != expected:
            raise ModelCardError(
                f"a {self.kind} model must have inputs {list(expected[0])} and outputs "
                f"{list(expected[1])}; the card says {list(self.inputs)} -> {list(self.outputs)}"
            )
        if self.kind == "sr3":
            if self.train_schedule is None:
                raise ModelCardError("an SR3 model card needs a train_schedule")
            if not self.inference_presets:
                raise ModelCardError("an SR3 model card needs at least one inference preset")
            for role, name in (("default", self.default_preset), ("compressed", self.compressed_preset)):
                if (name or role == "default") and name not in self.inference_presets:
                    raise ModelCardError(f"{role} preset {name!r} is not among {sorted(self.inference_presets)}")

    def _check_onepass(self) -> None:
        if tuple(self.value_range) not in ONEPASS_RANGES:
            raise ModelCardError(f"a one-pass model's value_range must be [0, 1] or [-1, 1], "
                                 f"got {list(self.value_range)}")
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ModelCardError(f"a one-pass model has one input and one output; the card says "
                                 f"{list(self.inputs)} -> {list(self.outputs)}")
        if self.scale < 2:
            raise ModelCardError(f"a one-pass upscaler must enlarge (scale 2 to 16), got {self.scale}")

    def preset(self, name: str) -> InferencePreset:
        """The named preset, or a ModelCardError listing the ones there are."""
        try:
            return self.inference_presets[name]
        except KeyError:
            raise ModelCardError(
                f"model {self.name!r} has no preset {name!r}; it has {self.preset_names()}"
            ) from None

    def preset_role(self, name: str) -> str:
        """What the app runs preset ``name`` for unasked, in words ("default", "JPEG inputs"); empty: nothing."""
        if name == self.default_preset:
            return "default"
        return "JPEG inputs" if name == self.compressed_preset else ""

    def preset_names(self) -> list[str]:
        """Preset names, fast / balanced / quality first."""
        known = [n for n in PRESET_ORDER if n in self.inference_presets]
        return known + sorted(n for n in self.inference_presets if n not in PRESET_ORDER)

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        data["outputs"] = list(self.outputs)
        data["value_range"] = list(self.value_range)
        data["train_schedule"] = self.train_schedule.to_dict() if self.train_schedule else None
        data["schema_version"] = SCHEMA_VERSION  # an older card read here is written back as the current version
        for preset in data["inference_presets"].values():
            preset["noise_levels"] = list(preset["noise_levels"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelCardError("model card must be a JSON object")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
            raise ModelCardError(
                f"model card schema_version {version!r} is not supported (this app reads "
                f"{list(READABLE_SCHEMA_VERSIONS)}); update SR3 Desktop or re-export the model"
            )
        required = ("name", "kind", "scale", "size_multiple", "inputs", "outputs")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelCardError(f"model card is missing required field(s): {', '.join(missing)}")
        try:
            schedule = data.get("train_schedule")
            presets = {
                str(name): _preset_from_dict(name, p) for name, p in (data.get("inference_presets") or {}).items()
            }
            return cls(
                name=str(data["name"]),
                kind=data["kind"],
                scale=int(data["scale"]),
                size_multiple=int(data["size_multiple"]),
                inputs=tuple(data["inputs"]),
                outputs=tuple(data["outputs"]),
                prediction=data.get("prediction", "epsilon"),
                target=data.get("target", "hr"),
                noise_conditioning=data.get("noise_conditioning", "sqrt_gamma"),
                condition=data.get("condition", "bicubic"),
                condition_model=str(data.get("condition_model", "")),
                value_range=tuple(float(v) for v in data.get("value_range", (-1.0, 1.0))),  # type: ignore[arg-type]
                train_schedule=ScheduleSpec.from_dict(schedule) if schedule else None,
                inference_presets=presets,
                default_preset=str(data.get("default_preset", "balanced")),
                compressed_preset=str(data.get("compressed_preset", "")),
                description=str(data.get("description", "")),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
                architecture=dict(data.get("architecture") or {}),
                attention_downsample=_optional_int(data.get("attention_downsample")),
                native_input_size=_optional_int(data.get("native_input_size")),
                fixed_tile_size=_optional_int(data.get("fixed_tile_size")),
                source=dict(data.get("source") or {}),
                probe=dict(data.get("probe") or {}),
                schema_version=SCHEMA_VERSION,  # read 1 to 5, held (and written) as the current version
            )
        except ModelCardError:
            raise
        except (TypeError, ValueError, KeyError) as err:
            raise ModelCardError(f"model card is malformed: {err}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelCardError(f"model card is not valid JSON: {err}") from None
        return cls.from_dict(data)


def _optional_int(value: Any) -> int | None:
    """An optional integer field: None stays None; a float or string that is not a whole number is refused."""
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value:
        raise ModelCardError(f"expected a whole number, got {value!r}")
    return int(value)


def _preset_from_dict(name: str, data: Any) -> InferencePreset:
    if not isinstance(data, dict):
        raise ModelCardError(f"preset {name!r} must be a JSON object")
    if "steps" not in data or "noise_levels" not in data:
        raise ModelCardError(f"preset {name!r} needs 'steps' and 'noise_levels'")
    return InferencePreset(
        steps=int(data["steps"]),
        noise_levels=tuple(float(g) for g in data["noise_levels"]),
        sampler=data.get("sampler", "ddpm"),
        eta=float(data.get("eta", 0.0)),
        start=data.get("start", "noise"),
        strength=float(data.get("strength", 1.0)),
        back_projection=int(data.get("back_projection", 0)),
        texture_cap=float(data.get("texture_cap", 0.0)),
        texture_gain=float(data.get("texture_gain", 1.0)),
        flat_amplitude=float(data.get("flat_amplitude", FLAT_AMPLITUDE)),
        grain=float(data.get("grain", 0.0)),
        deblock=data.get("deblock", False),
        schedule=dict(data.get("schedule") or {"type": "train_subsequence"}),
        description=str(data.get("description", "")),
        scores={str(k): float(v) for k, v in (data.get("scores") or {}).items()},
    )


# --- ONNX metadata -------------------------------------------------------------------------
def card_from_metadata(metadata: dict[str, str], source: str = "this ONNX file") -> ModelCard:
    """Parse the card from an ONNX metadata map (onnx metadata_props or ort custom_metadata_map).

    ``source`` names the file in the messages (every model refusal names its file).
    """
    text = metadata.get(CARD_METADATA_KEY)
    if text is None:
        raise ModelCardError(
            f"{source} has no '{CARD_METADATA_KEY}' metadata, so it was not exported by "
            "`python -m exporter export`; re-export it with the exporter"
        )
    try:
        return ModelCard.from_json(text)
    except ModelCardError as err:
        if source == "this ONNX file":
            raise
        raise ModelCardError(f"{source}: {err}") from None


def read_card(path: str | Path) -> ModelCard:
    """Read the card of an .onnx file without loading external data, importing onnx or creating a session."""
    try:
        metadata = read_metadata(path)
    except FileNotFoundError:
        raise ModelCardError(f"model file not found: {path}") from None
    except (MetadataError, OSError) as err:
        raise ModelCardError(f"{Path(path).name} is not a readable ONNX model ({err})") from None
    return card_from_metadata(metadata, Path(path).name)


def embed_card(model: Any, card: ModelCard) -> None:
    """Store ``card`` in an ``onnx.ModelProto``'s metadata, replacing any earlier card."""
    kept = [p for p in model.metadata_props if p.key != CARD_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = CARD_METADATA_KEY
    entry.value = card.to_json()
