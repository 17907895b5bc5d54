"""The validation test run of an untrusted model: one tiny inference, under a time limit.

Defence in depth behind ``model_safety``'s operator allowlist: whatever slips past it must not
hang the CLI or the app. ``probe`` runs the test in a child process (``python -m
sr3_desktop.core.model_files.probe FILE``) that is killed when the time limit passes, so neither a
graph that never ends nor one that exhausts memory can take the caller down. A PyInstaller app
cannot start ``python -m`` (its ``sys.executable`` is the app itself), so there the run goes to
a daemon thread whose onnxruntime ``RunOptions.terminate`` a watchdog sets; onnxruntime checks
it between nodes, inside ``Loop`` bodies too.

The test run (``probe_once``) opens the model with ``OnnxDenoiser`` (safety, card, signature),
feeds it a smooth image and unit noise, and refuses an output that is not finite or lies
outside the range the card's ``value_range`` allows for its kind of prediction (``output_bound``).
A file without a card is tried as a one-pass upscaler: the test run finds its interface
(``onepass_probe.find_interface``) and the child reports the card that says what it found.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sr3_desktop.core.diffusion.sampler import network_input
from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, ModelCard
from sr3_desktop.core.model_files.denoiser import PROVIDERS, OnnxDenoiser, create_session
from sr3_desktop.core.model_files.onepass_probe import find_interface, onepass_card
from sr3_desktop.core.model_files.safety import check_onnx_file

PROBE_TIMEOUT_S = 60.0
"""Time limit of one validation run, session creation included. The bundled models need about a
second (mostly the child's start-up); a large legitimate model loads in a few seconds."""
OUTPUT_MARGIN = 2.0
"""How far past the exact bound of ``output_bound`` an (imperfect) network may reach: as far again."""
TERMINATE_GRACE_S = 5.0
"""In-process runs: how long a run is given to stop after its terminate flag is set."""
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
"""The folder holding ``sr3_desktop``: the child must import this very copy."""


# --- the test run itself --------------------------------------------------------------------------
def probe_inputs(card: ModelCard) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth image, unit noise and the default preset's first noise level, at 2 * size_multiple px."""
    side = 2 * card.size_multiple
    ramp = np.linspace(-0.8, 0.8, side, dtype=np.float32)
    lr_up = np.broadcast_to(ramp[None, None, :, None] * ramp[None, None, None, :], (1, 3, side, side)).copy()
    y_t = np.random.default_rng(0).standard_normal((1, 3, side, side), dtype=np.float32)
    return lr_up, y_t, network_input(probe_gamma(card), card.noise_conditioning, 1)


def probe_gamma(card: ModelCard) -> float:
    """The noise level of the test run: the default preset's first (noisiest) one; regression takes none."""
    return card.preset(card.default_preset).noise_levels[0] if card.kind == "sr3" else 0.5


def output_bound(card: ModelCard, y_t: np.ndarray, gamma: float) -> float:
    """The largest |output| a model true to its card can give for this y_t at level gamma, times OUTPUT_MARGIN.

    The clean target y0 lies within the card's value_range (|y0| <= R, R = 1 for [-1, 1]); a residual
    target HR - bicubic spans twice that (R = 2). x0 predictions and regression outputs are y0 itself.
    Eps and v are not bounded by the range: Eq. 4, y_t = sqrt(g) y0 + sqrt(1 - g) eps, gives
    eps = (y_t - sqrt(g) y0) / sqrt(1 - g) and v = sqrt(g) eps - sqrt(1 - g) y0 = (sqrt(g) y_t - y0) / sqrt(1 - g),
    so an eps prediction may legitimately exceed [-1, 1] by far when y_t does or when g is near 1.
    """
    reach = max(abs(v) for v in card.value_range)
    r = reach * (2.0 if card.target == "residual" else 1.0)
    if card.kind == "regression" or card.prediction == "x0":
        return OUTPUT_MARGIN * r
    y_max = float(np.max(np.abs(y_t)))
    sg, s1g = math.sqrt(gamma), math.sqrt(max(1.0 - gamma, 1e-12))
    exact = (y_max + sg * r) / s1g if card.prediction == "epsilon" else (sg * y_max + r) / s1g
    return OUTPUT_MARGIN * exact


def probe_once(path: str | os.PathLike[str], run_options: ort.RunOptions | None = None) -> ModelCard:
    """The test run, in this process and without a time limit (``probe`` adds the limit): the file's card,
    or for a file without one, the card of the one-pass upscaler that the test run found."""
    source = Path(path)
    check_onnx_file(source)
    session = create_session(source, [PROVIDERS["cpu"]])
    if CARD_METADATA_KEY not in session.get_modelmeta().custom_metadata_map:
        return onepass_card(source, find_interface(session, source.name, run_options))
    del session
    model = OnnxDenoiser(source, "cpu")
    model.run_options = run_options
    card = model.card
    lr_up, y_t, level = probe_inputs(card)
    out = model.predict(lr_up, y_t, level) if card.kind == "sr3" else model.predict_image(lr_up)
    if not np.all(np.isfinite(out)):
        raise ModelError(f"{source.name} produced invalid values (NaN or infinity) on a test image")
    bound, peak = output_bound(card, y_t, probe_gamma(card)), float(np.max(np.abs(out)))
    if peak > bound:
        what = "output" if card.kind == "regression" else f"{card.prediction} prediction"
        raise ModelError(
            f"{source.name} produced absurd values on a test image: its {what} reaches {peak:.3g}, but for this "
            f"input it must stay within ±{bound:.3g} (the card's value_range {list(card.value_range)} with a "
            "margin); the model is broken or does not match its card"
        )
    return card


# --- under a time limit ----------------------------------------------------------------------------
FROZEN_PROBE_FLAG = "--sr3-model-probe"
"""A frozen app (PyInstaller) runs the child as ``APP --sr3-model-probe FILE`` (scripts/app_entry.py)."""


def probe(path: str | os.PathLike[str], timeout_s: float = PROBE_TIMEOUT_S) -> ModelCard:
    """The test run under a time limit: a child process, or a watched thread in an embedded interpreter
    without ``sys.executable``. Returns the card (for a card-less one-pass file, the one the run made)."""
    if not sys.executable:
        return probe_in_thread(path, timeout_s)
    return probe_in_child(path, timeout_s)


def child_command(path: Path) -> list[str]:
    """How to start the test run in a fresh process: ``python -m`` here, the app's own flag when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_PROBE_FLAG, str(path.resolve())]
    return [sys.executable, "-m", "sr3_desktop.core.model_files.probe", str(path.resolve())]


def _overran(name: str, timeout_s: float) -> ModelError:
    return ModelError(f"{name} was refused: its test run did not finish within {timeout_s:g} s and was stopped "
                      "(a model that runs without end, or is far too slow for this computer)")


def probe_in_child(path: str | os.PathLike[str], timeout_s: float = PROBE_TIMEOUT_S) -> ModelCard:
    """Run ``probe_once`` in a fresh interpreter; kill it when ``timeout_s`` passes."""
    source = Path(path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    command = child_command(source)
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              env=env, timeout=timeout_s, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child and waited for it
        raise _overran(source.name, timeout_s) from None
    except OSError as err:
        raise ModelError(f"{source.name} could not be tested: the test process did not start ({err})") from None
    lines = done.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        report = {}
    if done.returncode == 0 and report.get("ok") is True:
        return ModelCard.from_dict(report.get("card"))
    if isinstance(report.get("error"), str):
        raise ModelError(report["error"])
    tail = " ".join(done.stderr.strip().splitlines()[-3:])[-300:] or "no message"
    raise ModelError(f"{source.name} was refused: its test run crashed (exit code {done.returncode}: {tail})")


def probe_in_thread(path: str | os.PathLike[str], timeout_s: float = PROBE_TIMEOUT_S) -> ModelCard:
    """Run ``probe_once`` on a daemon thread; past ``timeout_s`` set its terminate flag and refuse.

    The caller is back after at most ``timeout_s + TERMINATE_GRACE_S``. A run stuck inside a single
    operator (not between nodes) cannot be stopped; its thread is left behind, as a daemon."""
    options = ort.RunOptions()
    options.log_severity_level = 4  # the stop is reported by our message, not onnxruntime's log
    failure: list[BaseException] = []
    cards: list[ModelCard] = []

    def run() -> None:
        try:
            cards.append(probe_once(path, options))
        except BaseException as err:  # handed to the caller's thread
            failure.append(err)

    worker = threading.Thread(target=run, name="sr3-model-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        options.terminate = True
        worker.join(TERMINATE_GRACE_S)
        raise _overran(Path(path).name, timeout_s)
    if failure:
        raise failure[0]
    return cards[0]


def child_main(argv: list[str]) -> int:
    """``python -m sr3_desktop.core.model_files.probe FILE``: one JSON line on stdout, {"ok": true,
    "card": {...}} or {"error": ...}."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m sr3_desktop.core.model_files.probe MODEL.onnx\n")
        return 2
    try:
        card = probe_once(argv[0])
    except SR3Error as err:
        print(json.dumps({"error": str(err)}))
        return 0
    print(json.dumps({"ok": True, "card": card.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
