"""`python -m exporter convert` on a checkpoint of the public SR3 implementation (tests/fixtures/sr3-reference-8x:
a small random network in exactly that implementation's format, with outputs of its own code).

The converted ONNX must give the golden eps; the app's own Sampler, fed the reference's noise stream, must
reproduce the reference's 100-step chain; and hostile or contradictory inputs are refused with exit 1 and
no output file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exporter.__main__ import main
from exporter.convert.command import convert
from exporter.convert.reference_files import strip_comments
from sr3_desktop.core.diffusion.sampler import Sampler
from sr3_desktop.core.model_files.card import ModelCard, embed_card, read_card
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sr3-reference-8x"
CHECKPOINT = FIXTURE / "checkpoint" / "I1000_E5_gen.pth"
CONFIG = FIXTURE / "config.json"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "face-8x.onnx"
    convert(FIXTURE / "checkpoint" / "I1000_E5", CONFIG, out)  # the prefix, as its resume_state names it
    return out


class RecordedNoise:
    """A NoiseSource that hands out a recorded stream of draws, in order, and checks each one's shape."""

    def __init__(self, draws: list[np.ndarray]) -> None:
        self.draws = list(draws)
        self.used = 0

    def standard_normal(self, size: tuple[int, ...], dtype: type[np.float32]) -> np.ndarray:
        draw = self.draws[self.used]
        assert draw.shape == size and dtype is np.float32
        self.used += 1
        return draw.copy()


@pytest.mark.parametrize("index", [0, 1], ids=["square-64", "non-square-32x48"])
def test_the_converted_onnx_gives_the_golden_eps(converted: Path, golden: dict[str, np.ndarray], index: int) -> None:
    """The app's session on the converted file reproduces the reference network within 1e-4, per batch item
    at its own noise level. Catches: cos before sin in the level encoding, a missing 1/sqrt(C) in attention,
    attention at the wrong level, the skip concatenation in the other order, GroupNorm with other groups."""
    model = OnnxDenoiser(converted, "cpu")
    eps = model.predict(golden[f"lr_up_{index}"], golden[f"y_t_{index}"], golden[f"sqrt_gamma_{index}"][:, 0])
    assert eps.shape == golden[f"eps_{index}"].shape
    assert float(np.abs(eps - golden[f"eps_{index}"]).max()) < 1e-4


def test_the_apps_sampler_fed_the_reference_noise_reproduces_its_chain(
        converted: Path, golden: dict[str, np.ndarray]) -> None:
    """The card's quality preset (the implementation's own val chain) stepped by the app's Sampler, with the
    reference's Gaussian draws (y_T, then one z per step t = T-1 .. 1), ends at its chain_output within 2e-3,
    and passes its intermediates. Catches: the quality preset's levels off by one step (sqrt_alphas_cumprod_prev
    confusion), a posterior variance other than beta_t (1 - g_s) / (1 - g_t), no x0 clipping, noise at t = 0."""
    model = OnnxDenoiser(converted, "cpu")
    preset = model.card.preset("quality")
    sampler = Sampler(np.asarray(preset.noise_levels), preset.sampler, preset.eta, model.card.prediction,
                      model.card.target, model.card.noise_conditioning)
    condition = golden["chain_condition"]
    rng = np.random.default_rng(int(golden["chain_seed"]))
    noise = RecordedNoise([rng.standard_normal(condition.shape, dtype=np.float32) for _ in range(100)])
    y = sampler.start(noise.standard_normal(condition.shape, dtype=np.float32))
    kept = []
    for i in range(sampler.num_steps):
        output = model.predict(condition, y, sampler.network_input(i))
        y, _ = sampler.step(output, i, y, noise)
        if (sampler.num_steps - 1 - i) % 11 == 0:  # the reference keeps loop steps t = 99, 88, ..., 0
            kept.append(y[0])
    assert noise.used == 100  # y_T and 99 z: none at the last step
    assert float(np.abs(y - golden["chain_output"]).max()) < 2e-3
    assert float(np.abs(np.stack(kept) - golden["chain_intermediates"]).max()) < 2e-3


def test_the_card_says_what_the_model_is(converted: Path, golden: dict[str, np.ndarray]) -> None:
    """Catches: scale not r_resolution / l_resolution, the native size, tile size, attention reach or source
    dropped, a quality preset that is not every val step from noise, a train schedule not from the config."""
    card = read_card(converted)
    assert (card.kind, card.scale, card.prediction, card.target, card.noise_conditioning, card.condition) == (
        "sr3", 8, "epsilon", "hr", "sqrt_gamma", "bicubic")
    sizes = (card.native_input_size, card.fixed_tile_size, card.attention_downsample, card.size_multiple)
    assert sizes == (8, 64, 4, 4)
    assert card.source["file"] == "I1000_E5_gen.pth"
    assert (card.source["iteration"], card.source["epoch"]) == (1000, 5)
    assert card.train_schedule is not None and card.train_schedule.to_dict() == {
        "type": "linear", "T": 2000, "beta_start": 1e-6, "beta_end": 1e-2}
    quality = card.preset("quality")
    assert (quality.sampler, quality.start, quality.strength, quality.steps) == ("ddpm", "noise", 1.0, 100)
    # val_betas went through float32 in the reference (1e-9 relative); the card keeps the config's float64
    np.testing.assert_allclose(quality.noise_levels, np.cumprod(1 - golden["val_betas"])[::-1], rtol=1e-8)
    for name in ("fast", "balanced"):
        preset = card.preset(name)
        assert preset.sampler == "ddim" and preset.start == "noise" and "Not searched" in preset.description
    assert ModelCard.from_json(card.to_json()) == card


def test_the_training_state_file_and_the_gen_file_convert_alike(tmp_path: Path, converted: Path) -> None:
    """Catches: the _opt.pth path not redirected to its _gen.pth (it would be refused as a training state)."""
    out = tmp_path / "from-opt.onnx"
    assert main(["convert", str(FIXTURE / "checkpoint" / "I1000_E5_opt.pth"), "--config", str(CONFIG),
                 "-o", str(out)]) == 0
    assert read_card(out) == read_card(converted)


def test_comments_are_stripped_outside_strings_only() -> None:
    """Catches: a naive split on '//' (the reference's own), which would cut "http://..." values."""
    assert strip_comments('{"a": "http://x", // note\n "b": 1 // end\n}') == '{"a": "http://x", \n "b": 1 \n}'


# --- refusals: exit 1, a message naming the file or key, no output ---------------------------------------
class _RunsCode:
    """A pickled object whose unpickling would create a file: it must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _config_with(tmp_path: Path, old: str, new: str) -> Path:
    text = CONFIG.read_text()
    assert old in text
    path = tmp_path / "options.json"
    path.write_text(text.replace(old, new))
    return path


def _refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, checkpoint: Path, config: Path) -> str:
    out = tmp_path / "out.onnx"
    assert main(["convert", str(checkpoint), "--config", str(config), "-o", str(out)]) == 1
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
    return capsys.readouterr().err


def test_a_checkpoint_that_needs_unpickling_is_refused_and_runs_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Catches: torch.load without weights_only=True (the marker file would appear)."""
    marker = tmp_path / "ran"
    hostile = tmp_path / "I5_E1_gen.pth"
    state = dict(torch.load(CHECKPOINT, weights_only=True))
    state["extra"] = _RunsCode(marker)  # type: ignore[assignment]
    torch.save(state, hostile)
    err = _refused(capsys, tmp_path, hostile, CONFIG)
    assert "I5_E1_gen.pth" in err and "arbitrary unpickling" in err and "None of its code ran" in err
    assert not marker.exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"not a checkpoint at all", "is not a readable PyTorch checkpoint"),
    ("tensor", "is not a checkpoint: it holds a Tensor"),
    ("foreign", "is not a checkpoint of that implementation's SR3 network"),
])
def test_files_that_are_not_reference_checkpoints_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str, message: str) -> None:
    """Catches: a missing type check (a bare tensor, or another network's dict, would crash or convert)."""
    path = tmp_path / "model.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(torch.zeros(3) if content == "tensor" else {"conv.weight": torch.zeros(3, 3)}, path)
    assert message in _refused(capsys, tmp_path, path, CONFIG)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('"which_model_G": "sr3"', '"which_model_G": "ddpm"', "model.which_model_G is 'ddpm'"),
    ('"conditional": true', '"conditional": false', "an unconditional model"),
    ('"inner_channel": 8', '"inner_channel": 16', "model.unet.inner_channel = 16, but the weights have 8"),
    ('"attn_res": [\n                16', '"attn_res": [\n                32', "model.unet.attn_res"),
    ('"res_blocks": 1', '"res_blocks": 2', "model.unet.res_blocks = 2"),
    ('"norm_groups": 4', '"norm_groups": 3', "model.unet.norm_groups = 3 does not divide"),
    ('"n_timestep": 2000', '"n_timestep": 1000', "model.beta_schedule.train"),
    ('"r_resolution": 64', '"r_resolution": 60', "is not a whole scale"),
])
def test_a_config_that_contradicts_the_weights_is_refused_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str) -> None:
    """Catches: any one of these checks removed (the conversion would go on with a wrong network or card)."""
    assert message in _refused(capsys, tmp_path, CHECKPOINT, _config_with(tmp_path, old, new))


def test_a_refused_conversion_keeps_an_existing_output_and_never_overwrites_an_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Catches: the output opened before the checks, or -o pointing at the config accepted."""
    out = tmp_path / "kept.onnx"
    out.write_bytes(b"earlier model")
    bad = _config_with(tmp_path, '"which_model_G": "sr3"', '"which_model_G": "ddpm"')
    assert main(["convert", str(CHECKPOINT), "--config", str(bad), "-o", str(out)]) == 1
    assert out.read_bytes() == b"earlier model"
    config = tmp_path / "config.json"
    shutil.copy(CONFIG, config)
    assert main(["convert", str(CHECKPOINT), "--config", str(config), "-o", str(config)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert config.read_text() == CONFIG.read_text()


def test_search_schedule_runs_on_a_converted_model_without_a_regression_model(
        tmp_path: Path, converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No preset of a converted model starts from regression, so the search needs none: it judges against
    bicubic and writes presets that start from bicubic or noise. Catches: --regression required again, or a
    regression start searched without a regression model. A card whose preset starts from regression is
    still refused without --regression (catches: that check dropped)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (128, 192, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "searched.onnx"
    args = ["search-schedule", str(converted), "--data", str(photos), "--crop", "64", "--crops-per-image", "1",
            "--sigmas", "0.3", "--end-ratios", "0.5", "--back-projection", "0", "--quality-steps", "3"]
    assert main([*args, "--out", str(out)]) == 0
    assert "the targets are relative to bicubic" in capsys.readouterr().out
    card = read_card(out)
    assert {p.start for p in card.inference_presets.values()} <= {"bicubic", "noise"}
    assert card.metrics["schedule_search"]["reference"].keys() == {"bicubic"}
    starts_from_regression = card.with_updates(inference_presets={
        **card.inference_presets, "fast": replace(card.preset("fast"), start="regression")})
    proto = onnx.load(str(out))
    embed_card(proto, starts_from_regression)
    onnx.save(proto, str(tmp_path / "needs-regression.onnx"))
    args[1] = str(tmp_path / "needs-regression.onnx")
    assert main([*args, "--out", str(tmp_path / "never.onnx")]) == 1
    assert "needs --regression" in capsys.readouterr().err and not (tmp_path / "never.onnx").exists()


def test_a_schedule_the_core_does_not_know_is_stored_as_its_betas(tmp_path: Path) -> None:
    """A warmup10 training schedule (linear over the first 10 %, then constant) becomes an "explicit" train
    schedule holding those betas. Catches: the betas computed by another rule, or a named kind stored instead."""
    from exporter.convert.command import convert_state
    from exporter.convert.reference_files import read_options, resolve

    config = read_options(_config_with(tmp_path, '"schedule": "linear",\n                "n_timestep": 2000',
                                       '"schedule": "warmup10",\n                "n_timestep": 2000'))
    expected = np.full(2000, 1e-2)
    expected[:200] = np.linspace(1e-6, 1e-2, 200)
    state = dict(torch.load(CHECKPOINT, weights_only=True))
    state["betas"] = torch.from_numpy(expected.astype(np.float32))
    card = convert_state(state, config, resolve(CHECKPOINT), "options.json").card
    assert card.train_schedule is not None and card.train_schedule.kind == "explicit"
    np.testing.assert_array_equal(card.train_schedule.betas(), expected)
    assert ModelCard.from_json(card.to_json()).train_schedule == card.train_schedule
