"""The seams where the one-pass kind meets the scale-aware model choice and the house's worker sessions:
an 8x SR3 model with a 4x regression model and a 4x and an 8x one-pass model installed."""

from __future__ import annotations

from pathlib import Path

from qt_helpers import make_card

from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.qt.app_state import AppModel
from sr3_desktop.qt.controllers.run_controller import (
    COMPARE_OFF,
    NO_ONEPASS,
    NO_REGRESSION,
    RunController,
    no_regression_text,
    opened_placeholders,
)
from sr3_desktop.qt.controllers.run_plan import RunPlan
from sr3_desktop.qt.settings import AppSettings


def _onepass_card(name: str, scale: int) -> ModelCard:
    return ModelCard(name=name, kind="onepass", scale=scale, size_multiple=1, inputs=("lr",), outputs=("hr",),
                     prediction="x0", value_range=(0.0, 1.0), default_preset="", probe={"by": "test run"})


def _entry(card: ModelCard, folder: Path) -> ModelEntry:
    return ModelEntry(card.name, folder / f"{card.name}.onnx", card, bundled=False)


def _model(tmp_path: Path) -> AppModel:
    model = AppModel(AppSettings())
    sr3 = make_card("sr3").with_updates(name="sr3-8x", scale=8)
    cards = [sr3, make_card("regression"), _onepass_card("rx4", 4), _onepass_card("rx8", 8)]
    model.model_entries = [_entry(card, tmp_path) for card in cards]
    model.settings.sr3_model = "sr3-8x"
    return model


def test_the_compare_models_follow_the_sr3_models_scale(tmp_path: Path) -> None:
    """Mutations caught: ``onepass_entry`` ignoring the scale (rx4 beside an 8x SR3), or ``regression_entry``
    losing its scale argument (the 4x regression model would be offered for 8x)."""
    model = _model(tmp_path)
    onepass = model.onepass_entry()
    assert onepass is not None and onepass.name == "rx8"
    assert model.regression_entry(8) is None and model.regression_entry() is not None
    assert no_regression_text(model, 8) == "No regression model fits 8x (installed: 4x)"


def test_the_plans_worker_sessions_open_the_one_pass_model_too(tmp_path: Path) -> None:
    """Mutation caught: ``RunPlan.sessions`` leaving the one-pass path out, so the worker never opens it and its
    pane stays empty; or ``entry`` not knowing the one-pass method."""
    model = _model(tmp_path)
    sr3, onepass = model.sr3_entry(), model.onepass_entry()
    assert sr3 is not None and onepass is not None
    plan = RunPlan(sr3, None, RefineOptions(), onepass=onepass)
    sessions = plan.sessions("cpu")
    assert (sessions.sr3_model, sessions.regression_model, sessions.device) == (sr3.path, None, "cpu")
    assert sessions.onepass_model == onepass.path
    assert plan.entry("onepass") is onepass and plan.entry("bicubic") is None
    assert RunPlan(sr3, None, RefineOptions()).sessions("cpu").onepass_model is None


def test_the_panes_say_what_is_missing_for_each_compare_model(tmp_path: Path) -> None:
    """Mutations caught: the scale-aware regression text or the one-pass pane lost from the placeholders of an
    opened image or of a run."""
    model = _model(tmp_path)
    missing = no_regression_text(model, 8)
    opened = opened_placeholders(True, False, missing, has_onepass=True)
    assert opened["regression"] == missing and opened["onepass"] == "Press Run (Ctrl+Enter) to compute"
    assert opened_placeholders(True, False)["onepass"] == NO_ONEPASS
    assert opened_placeholders(True, False)["regression"] == NO_REGRESSION
    assert set(opened_placeholders(False, True).values()) >= {COMPARE_OFF}
    sr3 = model.sr3_entry()
    assert sr3 is not None
    plan = RunPlan(sr3, None, RefineOptions(), onepass=model.onepass_entry())
    panes = RunController._run_placeholders(("bicubic", "regression", "onepass", "sr3"), plan, missing)
    assert (panes["regression"], panes["onepass"], panes["sr3"]) == (missing, "Computing…", "Starting…")
    off = RunController._run_placeholders(("sr3",), plan, missing)
    assert off["onepass"] == COMPARE_OFF and off["regression"] == COMPARE_OFF
