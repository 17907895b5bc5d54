"""Tiling: for a local model, blending tile outputs equals running the whole image; the blend streams
finished cells, so it holds only the tile overlap across the width, never the whole output."""

import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx_fixtures import local_sr3, save

from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.tiling import (
    TilingCancelled,
    auto_margin,
    batch_size,
    blend_tiles,
    choose_tile_size,
    iter_batches,
    min_tile_size,
    pad_plane,
    pad_to_multiple,
    padded_size,
    plan_tiles,
    run_tiled,
)

RADIUS = 2  # two 3x3 convs


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    model = local_sr3(layers=RADIUS, seed=3)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def network(session: ort.InferenceSession):  # type: ignore[no-untyped-def]
    def run(planes: list[np.ndarray]) -> np.ndarray:
        lr_up, y_t = planes
        level = np.full((lr_up.shape[0],), 0.4, dtype=np.float32)
        return session.run(None, {"lr_up": lr_up, "y_t": y_t, "noise_level": level})[0]

    return run


def planes_for(height: int, width: int, multiple: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lr_up = rng.uniform(-1, 1, (3, height, width)).astype(np.float32)
    y_t = rng.standard_normal((3, height, width)).astype(np.float32)
    return [pad_to_multiple(lr_up, multiple), pad_to_multiple(y_t, multiple)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    multiple=st.sampled_from([1, 2, 4, 8]),
    tile=st.integers(8, 48),
    margin=st.one_of(st.none(), st.integers(RADIUS, 6)),
    batch=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_tiled_equals_untiled_for_a_local_model(
    session: ort.InferenceSession, height: int, width: int, multiple: int, tile: int, margin: int | None,
    batch: int, seed: int,
) -> None:
    planes = planes_for(height, width, multiple, seed)
    h, w = planes[0].shape[1:]
    tile = max(tile, min_tile_size(multiple)) if margin is None else max(tile, 8 * margin + multiple)
    grid = plan_tiles(h, w, tile, multiple, margin)
    run = network(session)
    whole = run([p[None] for p in planes])[0]
    tiled = run_tiled(run, planes, grid, batch)
    event(f"tiles={min(len(grid), 4)}")
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (1, 40), (33, 2)])
def test_tiny_images_pad_and_run(session: ort.InferenceSession, size: tuple[int, int]) -> None:
    planes = planes_for(*size, multiple=8, seed=0)
    assert planes[0].shape[1] == padded_size(size[0], 8) and planes[0].shape[2] == padded_size(size[1], 8)
    grid = plan_tiles(*planes[0].shape[1:], tile=16, multiple=8)
    out = run_tiled(network(session), planes, grid, batch=2)
    np.testing.assert_allclose(out, network(session)([p[None] for p in planes])[0], atol=1e-5)


def test_the_test_can_fail_when_the_margin_is_smaller_than_the_receptive_field(session: ort.InferenceSession) -> None:
    planes = planes_for(64, 64, 1, seed=1)
    grid = plan_tiles(64, 64, 24, 1, margin=0)
    assert len(grid) > 1
    tiled = run_tiled(network(session), planes, grid, batch=1)
    assert np.abs(tiled - network(session)([p[None] for p in planes])[0]).max() > 1e-3


def test_reflect_padding() -> None:
    row = np.arange(3, dtype=np.float32).reshape(1, 1, 3)
    np.testing.assert_array_equal(pad_plane(row, 1, 6)[0, 0], [0, 1, 2, 1, 0, 1])
    np.testing.assert_array_equal(pad_plane(np.full((1, 1, 1), 5.0), 4, 4), np.full((1, 4, 4), 5.0))
    assert pad_to_multiple(np.zeros((3, 7, 7)), 8).shape == (3, 8, 8)
    assert pad_to_multiple(np.zeros((3, 16, 9)), 8).shape == (3, 16, 16)
    with pytest.raises(ValueError):
        pad_plane(np.zeros((1, 5, 5)), 4, 5)


def test_weights_vanish_near_interior_edges_only() -> None:
    grid = plan_tiles(200, 120, 64, 8, margin=4)
    assert len(grid) > 1
    for tile in grid.tiles:
        weight = grid.weight(tile)
        assert tile.top % 8 == 0 and tile.left % 8 == 0
        if tile.top > 0:
            assert np.all(weight[:4] == 0)
        else:
            assert np.all(weight[0, 4:-4] > 0)  # the image border itself keeps its weight
        if tile.left + tile.width < 120:
            assert np.all(weight[:, -4:] == 0)
        assert weight.max() == 1.0
    assert np.all(np.isfinite(grid.inverse_weight_sum)) and np.all(grid.inverse_weight_sum > 0)


def test_tile_cost_grows_linearly_with_pixels() -> None:
    """Pixels run through the network per output pixel, 512² to 4096² with the automatic 512 px tiles: the
    overlap of the 4 px margin costs at most 10 % (the 16 px margin cost 27-28 %, 8 px 15-16 %)."""
    ratios = []
    for side in (512, 1024, 1536, 2048, 3072, 4096):
        grid = plan_tiles(side, side, min(choose_tile_size(side, side, 8), 512), 8)
        ratios.append(grid.pixels_run / side**2)
    assert ratios[0] == 1.0 and max(ratios) <= 1.10, ratios


@pytest.mark.parametrize("tile", [128, 256, 512])
def test_seam_check_tiled_equals_untiled_within_the_automatic_margin(tmp_path: Path, tile: int) -> None:
    """Through the pipeline: a network whose reach is the automatic margin (4 px: four 3x3 convs) gives the
    same image tiled and untiled; one more conv reaches past the margin and the test sees it."""
    assert auto_margin(tile) == 4
    lr = np.random.default_rng(5).uniform(0, 1, (tile // 2, tile // 2 + 8, 3)).astype(np.float32)
    for layers, within in ((4, True), (5, False)):
        sr3 = OnnxDenoiser(save(local_sr3(layers=layers, seed=layers), tmp_path / f"l{layers}.onnx"), "cpu")
        untiled = run(lr, RefineOptions(preset="fast", seed=1, tile=4 * tile), sr3).image
        tiled = run(lr, RefineOptions(preset="fast", seed=1, tile=tile), sr3).image
        difference = float(np.abs(tiled - untiled).max())
        assert (difference <= 1e-5) == within, f"{layers} convs: {difference}"


def test_the_streamed_blend_is_the_full_image_blend_bit_for_bit(session: ort.InferenceSession) -> None:
    """Each pixel: the tiles' weighted outputs added in tile order, times 1 / the weight total, as a
    full-image accumulation computes it (written out here from the grid's weights)."""
    planes = planes_for(70, 90, 8, seed=4)
    h, w = planes[0].shape[1:]
    grid = plan_tiles(h, w, 32, 8, margin=3)
    run_net = network(session)
    total = np.zeros((3, h, w), dtype=np.float32)
    for tiles in iter_batches(grid, 3):
        outs = run_net([np.stack([p[:, t.rows, t.cols] for t in tiles]) for p in planes])
        for t, out in zip(tiles, outs, strict=True):
            total[:, t.rows, t.cols] += out * grid.weight(t)
    total *= grid.inverse_weight_sum
    np.testing.assert_array_equal(run_tiled(run_net, planes, grid, 3), total)
    cover = np.zeros((h, w), dtype=np.int64)

    def count(top: int, left: int, block: np.ndarray) -> None:
        cover[top : top + block.shape[1], left : left + block.shape[2]] += 1

    blend_tiles(run_net, planes, grid, 3, None, count)
    assert np.all(cover == 1)  # every pixel is emitted exactly once


class Generated:
    """A RegionSource: a plane made on demand, so the input planes cost no memory of their own."""

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        rows = np.arange(top, bottom, dtype=np.float32)[:, None]
        cols = np.arange(left, right, dtype=np.float32)[None, :]
        return np.broadcast_to(np.sin(rows * 0.01 + cols * 0.02), (3, bottom - top, right - left))


def test_the_blend_holds_the_overlap_strip_not_the_output() -> None:
    """A 3 x 2048 x 2048 output (48 MB as float32) in 128 px tiles: the blend's peak allocation is a few
    tiles plus the 16-row overlap across the width (~0.4 MB), not the output."""
    grid = plan_tiles(2048, 2048, 128, 8)
    emitted = [0]

    def drop(top: int, left: int, block: np.ndarray) -> None:
        emitted[0] += block.shape[1] * block.shape[2]

    tracemalloc.start()
    try:
        blend_tiles(lambda planes: planes[0] * np.float32(0.5), [Generated()], grid, 1, None, drop)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert emitted[0] == 2048 * 2048
    assert peak < 4e6, f"{peak / 1e6:.1f} MB"


def test_automatic_tile_size_and_batches() -> None:
    assert choose_tile_size(256, 256, 16, budget_pixels=512 * 512) == 256  # fits: one tile
    assert choose_tile_size(2048, 1024, 16, budget_pixels=512 * 512) == 512
    assert choose_tile_size(2048, 1024, 32, budget_pixels=500 * 500) == 480
    grid = plan_tiles(512, 512, 128, 16)
    assert batch_size(grid, 512 * 512) == min(len(grid), 16)
    assert batch_size(grid, 10) == 1
    assert len(plan_tiles(64, 64, 512, 8)) == 1
    with pytest.raises(ValueError):
        plan_tiles(64, 64, 16, 16, margin=8)
    with pytest.raises(ValueError):
        plan_tiles(60, 64, 16, 8)


def test_a_stop_request_cancels_between_batches(session: ort.InferenceSession) -> None:
    planes = planes_for(64, 64, 8, seed=2)
    grid = plan_tiles(64, 64, 32, 8)
    calls: list[int] = []

    def run(planes: list[np.ndarray]) -> np.ndarray:
        calls.append(planes[0].shape[0])
        return network(session)(planes)

    with pytest.raises(TilingCancelled):
        run_tiled(run, planes, grid, batch=1, should_stop=lambda: len(calls) >= 1)
    assert calls == [1]
