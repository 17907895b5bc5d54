"""One-pass ONNX upscalers without a card: the test run that finds their interface, their tiled runner,
``models import`` and ``--method regression --model FILE`` (issue 20). Each test names a mutation it catches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onepass_fixtures import (
    even_only_upscaler,
    numpy_unit_range,
    signed_range_upscaler,
    unit_range_upscaler,
)
from onnx import TensorProto, helper
from onnx_fixtures import _finish, _tensor, endless_loop_sr3, make_card, save
from PIL import Image

from sr3_desktop import cli
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import read_card
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser, clear_cache
from sr3_desktop.core.model_files.folders import user_models_dir
from sr3_desktop.core.model_files.onepass_probe import probe_image
from sr3_desktop.core.model_files.probe import probe_once
from sr3_desktop.core.model_files.registry import import_model, list_models
from sr3_desktop.core.upscale.onepass_runner import MARGIN_INPUT_PX
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.tiling import plan_tiles


def probed(model: onnx.ModelProto, tmp_path: Path, name: str = "net.onnx") -> OnnxDenoiser:
    """The card-less file, test-run in this process, behind a session with the card the run made."""
    path = save(model, tmp_path / name)
    return OnnxDenoiser(path, "cpu", probe_once(path))


@pytest.mark.parametrize("scale", [2, 4])
def test_a_unit_range_upscaler_is_found_as_such(tmp_path: Path, scale: int) -> None:
    """Mutations caught: the scale read off one axis only or off the input, [-1, 1] preferred on a tie or always
    chosen, the graph's own names not kept, the card's probe record dropped."""
    card = probed(unit_range_upscaler(scale), tmp_path).card
    assert (card.kind, card.scale, card.value_range, card.size_multiple) == ("onepass", scale, (0.0, 1.0), 1)
    assert (card.inputs, card.outputs, card.name) == (("lr",), ("hr",), "net")
    errors = card.probe["consistency_mse"]
    assert errors["[0, 1]"] < 1e-4 < errors["[-1, 1]"]
    assert card.probe["source_sha256"] and card.probe["by"] == "test run"


def test_a_signed_range_upscaler_is_found_as_such(tmp_path: Path) -> None:
    """Mutation caught: the range fixed to [0, 1] (or the errors compared the wrong way round)."""
    card = probed(signed_range_upscaler(), tmp_path).card
    assert card.value_range == (-1.0, 1.0)


def test_a_graph_that_fails_at_odd_sizes_gets_padded_inputs(tmp_path: Path) -> None:
    """A pixel-unshuffle model runs on an odd-sized photo, at its exact size (it is a nearest upsample).
    Mutations caught: size_multiple always 1 (the run fails on SpaceToDepth), the padding not cropped off."""
    model = probed(even_only_upscaler(), tmp_path)
    assert model.card.size_multiple == 8
    lr = probe_image(13, 21)
    result = run(lr, RefineOptions(method="onepass"), None, onepass=model)
    assert result.size == (42, 26)
    np.testing.assert_allclose(result.image, lr.repeat(2, 0).repeat(2, 1), atol=1e-4)  # 16-bit canvas


def _two_outputs() -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", ["lr"], ["a"]), helper.make_node("Identity", ["lr"], ["b"])]
    image = ["N", 3, "H", "W"]
    return _finish(nodes, [_tensor("lr", TensorProto.FLOAT, image)],
                   [_tensor("a", TensorProto.FLOAT, image), _tensor("b", TensorProto.FLOAT, image)], [], None)


def _resize(scales: list[float]) -> onnx.ModelProto:
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(np.array(scales, dtype=np.float32), "scales")]
    nodes = [helper.make_node("Resize", ["lr", "", "scales"], ["hr"], mode="nearest")]
    return _finish(nodes, [_tensor("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                   [_tensor("hr", TensorProto.FLOAT, ["N", 3, "H2", "W2"])], inits, None)


def _inverted() -> onnx.ModelProto:
    """A 2x nearest upsample of 1 - x: the right shape, the wrong picture (a different task)."""
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")]
    nodes = [helper.make_node("Sub", ["one", "lr"], ["negative"]),
             helper.make_node("Resize", ["negative", "", "scales"], ["hr"], mode="nearest")]
    return _finish(nodes, [_tensor("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                   [_tensor("hr", TensorProto.FLOAT, ["N", 3, "H2", "W2"])], inits, None)


@pytest.mark.parametrize(("model", "message"), [
    (_two_outputs, "one input and one output, this one has 1 and 2"),
    (lambda: _resize([1, 1, 1, 1]), r"not \(1, 3, s\*16, s\*24\) for a scale s from 2 to 16"),
    (lambda: _resize([1, 1, 2, 3]), r"gave an output of shape \[1, 3, 32, 72\]"),
    (_inverted, "is not an upscaler of the image it is given"),
])
def test_what_is_not_a_one_pass_upscaler_is_refused(tmp_path: Path, model: object, message: str) -> None:
    """Mutations caught: each check of find_interface removed (the count of outputs, the same scale on both axes
    and at least 2, the consistency bound)."""
    path = save(model(), tmp_path / "odd.onnx")  # type: ignore[operator]
    with pytest.raises(ModelError, match=message):
        probe_once(path)


def test_a_card_less_graph_with_control_flow_is_refused_before_any_run(tmp_path: Path) -> None:
    """The allowlist holds for card-less files too. Mutation caught: probe_once creating its session before
    check_onnx_file (the endless Loop would run)."""
    loop = endless_loop_sr3(make_card("sr3"))
    del loop.metadata_props[:]
    with pytest.raises(ModelError, match="Loop"):
        probe_once(save(loop, tmp_path / "loop.onnx"))


def test_the_runner_gives_the_network_s_own_output(tmp_path: Path) -> None:
    """Untiled, the image is the network's output on the LR image in its range, clipped to [0, 1]. Mutations
    caught: the LR image fed in model space [-1, 1] instead of the card's range, or bicubic-upsampled first."""
    model = probed(unit_range_upscaler(4), tmp_path)
    lr = np.random.default_rng(3).random((12, 20, 3)).astype(np.float32)
    result = run(lr, RefineOptions(method="onepass"), None, onepass=model)
    expected = np.clip(numpy_unit_range(lr.transpose(2, 0, 1), 4), 0, 1).transpose(1, 2, 0)
    assert result.size == (80, 48) and result.method == "onepass"
    np.testing.assert_allclose(result.image, expected, atol=1e-4)  # the 16-bit canvas rounds to 1.5e-5


def test_a_signed_model_is_run_in_its_range(tmp_path: Path) -> None:
    """Mutation caught: the runner encoding to [0, 1] whatever the card says (the signed net's bias would
    darken the image by about 0.1)."""
    model = probed(signed_range_upscaler(), tmp_path)
    lr = probe_image(16, 24)
    image = run(lr, RefineOptions(method="onepass"), None, onepass=model).image
    down = image.reshape(16, 2, 24, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(down, lr, atol=2e-3)


def test_tiles_blend_seam_free(tmp_path: Path) -> None:
    """A network that sees 1 input pixel is tiled exactly: tiled == untiled to float error. Mutations caught:
    a tile margin of 0 (its zero-padded tile edges would show), tile regions cut at the wrong input rows."""
    model = probed(unit_range_upscaler(2), tmp_path)
    lr = np.random.default_rng(1).random((90, 100, 3)).astype(np.float32)
    whole = run(lr, RefineOptions(method="onepass"), None, onepass=model).image
    tiled = run(lr, RefineOptions(method="onepass", tile=160), None, onepass=model).image
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    assert len(plan_tiles(180, 200, 160, 2, MARGIN_INPUT_PX * 2)) == 6  # the run above really had several tiles


def test_a_too_small_tile_is_refused_with_the_size_to_use(tmp_path: Path) -> None:
    """Mutation caught: plan_tiles' ValueError escaping as a bug instead of a user message."""
    model = probed(unit_range_upscaler(2), tmp_path)
    with pytest.raises(Exception, match="use at least 130"):
        run(probe_image(40, 40), RefineOptions(method="onepass", tile=40), None, onepass=model)


# --- the command line --------------------------------------------------------------------------------------
def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def photo(tmp_path: Path, empty_model_folders: tuple[Path, Path]) -> Path:
    clear_cache()
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((probe_image(20, 28) * 255).astype(np.uint8)).save(path)
    return path


def test_method_regression_with_a_card_less_file_probes_it_on_each_run_and_says_so(
        tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations caught: the probe's result cached for card-less files (the second run would not say so),
    the one-pass model run as a regression model (its output is not the size of its input: refused)."""
    from sr3_desktop.core.model_files import registry as models

    calls: list[Path] = []
    real = models.probe
    monkeypatch.setattr(models, "probe", lambda path, *a, **k: calls.append(Path(path)) or real(path, *a, **k))
    net = save(unit_range_upscaler(2), tmp_path / "tiny-2x.onnx")
    for run_number in (1, 2):
        target = tmp_path / f"out{run_number}.png"
        code, _, err = call("upscale", str(photo), "-o", str(target), "--method", "regression", "--model", str(net))
        assert code == 0, err
        assert "tiny-2x has no model card: a test run found a one-pass 2x upscaler, input range [0, 1]" in err
        assert "running it as one" in err
        with Image.open(target) as image:
            assert image.size == (56, 40)
    assert calls == [net, net]


def test_models_import_writes_a_copy_with_the_card_and_leaves_the_file_alone(tmp_path: Path, photo: Path) -> None:
    """Mutations caught: the file copied without the card (read_card refuses the copy), the source rewritten in
    place, the second import of the same file refused as 'a different model'."""
    net = save(unit_range_upscaler(2), tmp_path / "tiny-2x.onnx")
    before = net.read_bytes()
    code, out, err = call("models", "import", str(net))
    assert code == 0, err
    copy = user_models_dir() / "tiny-2x.onnx"
    assert f"imported tiny-2x -> {copy}" in out and "input range [0, 1] (found by a test run)" in out
    assert net.read_bytes() == before
    card = read_card(copy)
    assert (card.kind, card.scale, card.value_range) == ("onepass", 2, (0.0, 1.0))
    assert [p.name for p in user_models_dir().iterdir()] == ["tiny-2x.onnx"]  # no temp file left
    assert import_model(net).path == copy
    assert [e.name for e in list_models() if e.kind == "onepass"] == ["tiny-2x"]
    code, _, err = call("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--method", "onepass")
    assert code == 0 and "has no model card" not in err  # the imported card is read, not made again
