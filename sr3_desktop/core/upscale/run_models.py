"""Which models a run loads: the SR3 or regression model asked for (or the default one), and the regression
model an SR3 chain starts from or is conditioned on. Part of the one upscale flow (``core.upscale.flow``
uses it; callers import these names from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.card import COMPRESSED_QUALITY, InferencePreset, ModelCard
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser, get_denoiser, get_denoisers
from sr3_desktop.core.model_files.onepass_probe import describe_found
from sr3_desktop.core.model_files.registry import ModelEntry, default_model, list_models, resolve_model
from sr3_desktop.core.upscale.refine_types import Method, RefineOptions

DEFAULT_BICUBIC_SCALE = 4
"""The bicubic method's scale when no model is installed to take it from."""


# --- which models a run loads --------------------------------------------------------------------
@dataclass(frozen=True)
class RegressionChoice:
    """The regression model an SR3 run loads (or None), and what the user should know about it."""

    entry: ModelEntry | None
    notes: tuple[str, ...] = ()


def preset_of(card: ModelCard, options: RefineOptions) -> InferencePreset:
    """The recipe an SR3 run follows: the explicit one, the named one, or the card's default
    (``preset_name``)."""
    return options.custom_preset or card.preset(preset_name(card, options))


def preset_name(card: ModelCard, options: RefineOptions) -> str:
    """The preset a run names: the user's, else the card's compressed preset for a JPEG input saved at
    quality <= COMPRESSED_QUALITY (where the card has one), else the card's default."""
    if options.preset:
        return options.preset
    if compressed_input(card, options):
        return card.compressed_preset
    return card.default_preset


def compressed_input(card: ModelCard, options: RefineOptions) -> bool:
    """Whether the input's JPEG quality makes this card's compressed preset stand in for its default (no preset
    named or given)."""
    quality = options.input_quality
    unnamed = options.custom_preset is None and not options.preset
    return unnamed and bool(card.compressed_preset) and quality is not None and quality <= COMPRESSED_QUALITY


def regression_for(card: ModelCard, options: RefineOptions, entries: Sequence[ModelEntry] | None = None,
                   preferred: str | None = None) -> RegressionChoice:
    """The one rule for which regression model an SR3 run loads.

    * A card with ``condition == "regression"`` refines the output of the model it names in
      ``condition_model``: that model (found by name among ``entries``, the installed models) is
      required. If it is missing, the ``preferred`` / default regression model stands in, with a
      note; if there is none of the card's scale, ``ModelError``.
    * Otherwise a preset that starts from a regression estimate (with no preset named, the default or the
      compressed one, which a JPEG input runs) loads the ``preferred`` regression model (the app's choice),
      else the default one, of the card's scale; without one the pipeline starts from bicubic and says so.
    * Anything else loads none.
    """
    if options.method != "sr3" or card.kind != "sr3":
        return RegressionChoice(None)
    pool = [e for e in (list_models() if entries is None else entries) if e.kind == "regression"]
    fitting = [e for e in pool if e.card.scale == card.scale]
    fallback = _regression_default(fitting, preferred)
    if card.condition == "regression":
        wanted = card.condition_model.casefold()
        named = [e for e in pool if wanted in (e.name.casefold(), e.path.stem.casefold())]
        if named and named[0].card.scale == card.scale:
            return RegressionChoice(named[0])
        why = "is not installed" if not named else f"upscales {named[0].card.scale}x, not {card.scale}x"
        if fallback is None:
            raise ModelError(f"{card.name} refines the output of the regression model {card.condition_model!r}, "
                             f"which {why}; import that model (or another {card.scale}x regression model)")
        return RegressionChoice(fallback, (f"the regression model {card.condition_model!r} that {card.name} "
                                           f"refines {why}: using {fallback.name} instead",))
    unnamed = options.custom_preset is None and not options.preset  # a JPEG of the batch may run the compressed one
    starts = {preset_of(card, options).start, *([card.preset(card.compressed_preset).start]
                                                if unnamed and card.compressed_preset else [])}
    if "regression" in starts:
        return RegressionChoice(fallback)
    return RegressionChoice(None)


def _regression_default(fitting: list[ModelEntry], preferred: str | None) -> ModelEntry | None:
    """The preferred model (by name) if it fits, else the default among those that fit."""
    chosen = [e for e in fitting if preferred and e.name.casefold() == preferred.casefold()]
    return chosen[0] if chosen else default_model("regression", fitting)


@dataclass(frozen=True)
class Models:
    """The sessions one run uses; ``scale`` is the bicubic method's scale."""

    sr3: OnnxDenoiser | None = None
    regression: OnnxDenoiser | None = None
    scale: int | None = None
    notes: tuple[str, ...] = ()
    """What the user should know about the choice (a stand-in regression model, a test-run one-pass file, ...)."""
    onepass: OnnxDenoiser | None = None
    """The one-pass upscaler of the "onepass" method."""

    @property
    def sessions(self) -> list[OnnxDenoiser]:
        return [m for m in (self.sr3, self.regression, self.onepass) if m is not None]

    def of(self, method: str) -> OnnxDenoiser | None:
        """The session that runs ``method`` (None for bicubic)."""
        return {"sr3": self.sr3, "regression": self.regression, "onepass": self.onepass}.get(method)


def load_models(method: str, model: str | None, options: RefineOptions, device: str = "auto") -> Models:
    """The models a run needs: ``model`` (an installed name or an .onnx path) or the default one of
    the method's kind, plus the regression model that ``regression_for`` picks for an SR3 run.

    ``--method regression`` with a one-pass model (a file without a card, or an imported one) runs it
    as the one-pass method, with a note; so does ``--method onepass``. Run the returned models with
    ``run_method`` (the method this choice really runs)."""
    if method == "bicubic":
        if model:
            return Models(scale=resolve_model(model).card.scale)
        entry = default_model("sr3") or default_model("regression")
        return Models(scale=entry.card.scale if entry else DEFAULT_BICUBIC_SCALE)
    if method in ("regression", "onepass"):
        entry = resolve_model(model) if model else _entry(None, method)
        if entry.kind not in ("regression", "onepass"):
            _entry(model, method)  # the usual "is a ... model, but a ... model is needed here"
        session = get_denoiser(entry.path, device, entry.card if entry.probed else None)
        if entry.kind == "regression":
            return Models(regression=session)
        notes = (describe_found(entry.card) + "; the test runs again on every run, and `python -m sr3_desktop models "
                 f"import {entry.path}` stores that card with a copy",) if entry.probed else ()
        if method == "regression":
            notes = (*notes, f"{entry.name} is a one-pass upscaler: running it as one (the LR image in, "
                     f"{entry.card.scale}x out), not as a regression model")
        return Models(onepass=session, notes=notes)
    entry = _entry(model, "sr3")
    choice = regression_for(entry.card, options)  # the card as the registry read it: the same metadata
    if choice.entry is None:
        return Models(sr3=get_denoiser(entry.path, device), notes=choice.notes)
    sr3, regression = get_denoisers([entry.path, choice.entry.path], device)
    return Models(sr3=sr3, regression=regression, notes=choice.notes)


def run_method(method: Method, models: Models) -> Method:
    """The method a run really makes: "onepass" when ``--method regression`` loaded a one-pass model."""
    return "onepass" if method == "regression" and models.onepass is not None else method


def _entry(name: str | None, kind: str) -> ModelEntry:
    if name:
        return resolve_model(name, kind)
    entry = default_model(kind)
    if entry is None:
        raise SR3Error(f"no {kind} model is installed; pass --model PATH to an exported .onnx file, "
                       "or use --method bicubic")
    return entry
