"""The geometric self-ensemble (``core.upscale.self_ensemble``): the mean of a network's outputs over flips and
transposes of its input, each transformed back, for the regression model, SR3's regression anchor and one-pass
models, per tile. Each test names a mutation it catches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onepass_fixtures import numpy_unit_range, unit_range_upscaler
from onnx_fixtures import local_sr3, regression, save

from sr3_desktop import cli
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.model_files.probe import probe_once
from sr3_desktop.core.upscale.estimate import plan_work
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.self_ensemble import ENSEMBLE_SIZES, ensembled

RNG = np.random.default_rng(8)
LEFT_NEIGHBOUR = np.zeros((3, 1, 3, 3), dtype=np.float32)
LEFT_NEIGHBOUR[:, 0, 1, 0] = 1.0  # each pixel takes its left neighbour: not mirror-symmetric


def test_an_equivariant_network_is_its_own_ensemble_at_every_size() -> None:
    """A 2x nearest upsampler commutes with every flip and transpose, so each ensemble equals one pass, on a
    non-square batch. Mutations caught: an inverse that undoes the transpose before the flips (a 180 degree
    turn is left over), a flip on the wrong axis, a wrong divisor."""
    planes = RNG.random((2, 3, 5, 7)).astype(np.float32)

    def upsample(p: np.ndarray) -> np.ndarray:
        return p.repeat(2, axis=-1).repeat(2, axis=-2)

    for size in ENSEMBLE_SIZES:
        np.testing.assert_allclose(ensembled(upsample, size)(planes), upsample(planes), rtol=0, atol=1e-6)


def test_a_position_dependent_network_is_averaged_with_its_mirror() -> None:
    """A network that adds a ramp over the columns: the mirror's output, mirrored back, has the ramp reversed,
    so the 2-ensemble adds the ramp's mean. Mutation caught: the output not transformed back (the image itself
    would come out averaged with its mirror)."""
    planes = RNG.random((1, 3, 4, 6)).astype(np.float32)
    ramp = np.arange(6, dtype=np.float32)
    out = ensembled(lambda p: p + ramp, 2)(planes)
    np.testing.assert_allclose(out, planes + ramp.mean(), rtol=0, atol=1e-6)


def test_other_sizes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(SR3Error, match="--ensemble must be one of 1, 2, 4, 8, got 3"):
        run(np.zeros((8, 8, 3), np.float32), RefineOptions(method="bicubic", ensemble=3), None)


def _mirror_mean(image_of: object, lr: np.ndarray) -> np.ndarray:
    """The image-level 2-ensemble: the run on ``lr`` and on its mirror (mirrored back), averaged."""
    run_once = image_of  # type: ignore[assignment]
    return 0.5 * (run_once(lr) + run_once(lr[:, ::-1].copy())[:, ::-1])  # type: ignore[operator]


def test_the_regression_method_averages_the_mirrored_run(tmp_path: Path) -> None:
    """A regression model that is not mirror-symmetric: ``ensemble=2`` is the mean of the run and the mirrored
    run, at two network passes. Mutations caught: the pipeline not passing ``ensemble`` on (one pass, the
    plain image), the result counting one evaluation."""
    model = OnnxDenoiser(save(regression(kernel=LEFT_NEIGHBOUR), tmp_path / "reg.onnx"), "cpu")
    lr = (0.25 + 0.5 * RNG.random((16, 24, 3))).astype(np.float32)  # no clipping; 64 x 96 out: no padding

    def plain(image: np.ndarray) -> np.ndarray:
        return run(image, RefineOptions(method="regression"), None, model).image

    result = run(lr, RefineOptions(method="regression", ensemble=2), None, model)
    assert result.steps == 2
    np.testing.assert_allclose(result.image, _mirror_mean(plain, lr), rtol=0, atol=3e-5)
    assert np.abs(result.image - plain(lr)).max() > 0.05


def test_the_ensemble_runs_per_tile_and_keeps_tiling_seam_free(tmp_path: Path) -> None:
    """8 transforms over small tiles equal 8 over the whole image (the network sees one pixel, the tiles'
    margin more). Mutation caught: the transforms applied across the batch of tiles (swapping tiles)."""
    model = OnnxDenoiser(save(regression(kernel=LEFT_NEIGHBOUR), tmp_path / "reg.onnx"), "cpu")
    lr = RNG.random((40, 56, 3)).astype(np.float32)
    whole = run(lr, RefineOptions(method="regression", ensemble=8), None, model).image
    tiled = run(lr, RefineOptions(method="regression", ensemble=8, tile=64), None, model).image
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=3e-5)


def test_sr3_refines_the_ensembled_anchor_and_counts_its_passes(tmp_path: Path) -> None:
    """An SR3 chain over a regression model: the anchor's passes count in the evaluations, and the anchor is
    the ensembled one (a chain from it differs). Mutation caught: the chain running its regression pass once
    whatever ``ensemble`` says."""
    reg = OnnxDenoiser(save(regression(name="reg-fixture", kernel=LEFT_NEIGHBOUR), tmp_path / "reg.onnx"), "cpu")
    sr3 = OnnxDenoiser(save(local_sr3(seed=2, condition="regression", condition_model="reg-fixture",
                                      prediction="x0", target="residual"), tmp_path / "sr3.onnx"), "cpu")
    lr = RNG.random((16, 16, 3)).astype(np.float32)
    one = run(lr, RefineOptions(method="sr3", preset="fast"), sr3, reg)
    four = run(lr, RefineOptions(method="sr3", preset="fast", ensemble=4), sr3, reg)
    assert four.steps == one.steps + 3
    assert np.abs(four.image - one.image).max() > 0.01


def test_a_one_pass_model_averages_its_mirrored_run(tmp_path: Path) -> None:
    """A one-pass upscaler with random sub-pixel detail (not mirror-symmetric). Mutation caught: the runner not
    given ``ensemble`` (its plain output)."""
    path = save(unit_range_upscaler(2), tmp_path / "net.onnx")
    model = OnnxDenoiser(path, "cpu", probe_once(path))
    lr = RNG.random((12, 20, 3)).astype(np.float32)

    def raw(image: np.ndarray) -> np.ndarray:
        return numpy_unit_range(image.transpose(2, 0, 1), 2).transpose(1, 2, 0)

    expected = np.clip(0.5 * (raw(lr) + raw(lr[:, ::-1].copy())[:, ::-1]), 0, 1)
    result = run(lr, RefineOptions(method="onepass", ensemble=2), None, onepass=model)
    assert result.steps == 2
    np.testing.assert_allclose(result.image, expected, rtol=0, atol=1e-4)
    assert np.abs(result.image - np.clip(raw(lr), 0, 1)).max() > 0.01


def test_the_time_estimate_counts_the_ensemble_passes(tmp_path: Path) -> None:
    """Mutation caught: the estimate planning one regression pass whatever the ensemble."""
    model = OnnxDenoiser(save(regression(), tmp_path / "reg.onnx"), "cpu")
    work = plan_work((32, 32), RefineOptions(method="regression", ensemble=4), None, model, 4)
    assert [w.evaluations for w in work] == [4]


def test_the_cli_takes_ensemble_and_refuses_other_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutations caught: ``--ensemble`` not reaching RefineOptions (the plain image is written), or taking 3."""
    from PIL import Image

    model = save(regression(kernel=LEFT_NEIGHBOUR), tmp_path / "reg.onnx")
    photo = tmp_path / "photo.png"
    Image.fromarray((RNG.random((16, 24, 3)) * 255).astype(np.uint8)).save(photo)
    outs = {}
    for size in (1, 2):
        out = tmp_path / f"out{size}.png"
        assert cli.main(["upscale", str(photo), "-o", str(out), "--method", "regression", "--model", str(model),
                         "--ensemble", str(size), "--quiet"]) == 0
        outs[size] = np.asarray(Image.open(out), dtype=np.float64)
    assert np.abs(outs[2] - outs[1]).max() > 10
    assert cli.main(["upscale", str(photo), "-o", str(tmp_path / "x.png"), "--ensemble", "3"]) == 2
    assert "invalid choice: 3" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
