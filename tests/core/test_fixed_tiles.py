"""Cards of converted models: tiles of exactly the training size or none (``fixed_tile_size``), the
attention's reach from ``attention_downsample``, and the warning far from ``native_input_size``."""

from __future__ import annotations

import pytest
from onnx_fixtures import make_card

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.upscale.model_space import max_auto_tile, plan_grid
from sr3_desktop.core.upscale.sr3_chain import native_size_note

BUDGET = 1 << 20


def test_a_fixed_tile_model_runs_untiled_when_it_fits_else_in_tiles_of_exactly_its_size() -> None:
    """Catches: the automatic tile (here 256, the attention bound) used instead of the card's 64, or a small
    image split although it fits (both change what the whole-image attention sees)."""
    card = make_card(size_multiple=4, fixed_tile_size=64, attention_downsample=4)
    assert max_auto_tile(card) == 256
    grid, _ = plan_grid(card, 128, 128, None, BUDGET)
    assert (grid.tile_height, grid.tile_width, len(grid)) == (128, 128, 1)
    grid, _ = plan_grid(card, 160, 320, None, BUDGET)  # wider than the attention bound: tiles of 64
    assert (grid.tile_height, grid.tile_width) == (64, 64) and len(grid) > 1
    grid, _ = plan_grid(card, 160, 320, 64, BUDGET)
    assert (grid.tile_height, grid.tile_width) == (64, 64)


def test_another_tile_size_is_refused_for_a_fixed_tile_model() -> None:
    """Catches: an explicit --tile other than the training size accepted."""
    card = make_card(size_multiple=4, fixed_tile_size=64)
    with pytest.raises(SR3Error, match="tiles of exactly 64 px or untiled; use --tile 64"):
        plan_grid(card, 160, 320, 32, BUDGET)


def test_the_cards_attention_downsample_wins_over_the_architecture() -> None:
    """Catches: model_space ignoring the card field (our U-Net's settings would give 8 here)."""
    card = make_card(size_multiple=8, attention_downsample=2)
    assert max_auto_tile(card) == 128
    assert max_auto_tile(make_card(size_multiple=8)) == 512


@pytest.mark.parametrize(("size", "warned"), [((16, 16), False), ((4, 8), False), ((40, 20), True), ((3, 8), True)])
def test_an_input_far_from_the_native_size_is_warned_about(size: tuple[int, int], warned: bool) -> None:
    """Catches: the note never given, or given within a factor of 2 of the native 8 px."""
    note = native_size_note(make_card(native_input_size=8), *size)
    assert (note is not None) == warned
    if note:
        assert "was trained on 8x8 px inputs" in note
    assert native_size_note(make_card(), 400, 400) is None
