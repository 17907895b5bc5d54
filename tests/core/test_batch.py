"""core.upscale.flow: finding images, the format table, output plans, the existing-output rule, the
start-estimate rule (with condition_model pairing) and one item through load -> refine -> save."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, make_card, regression, save
from PIL import Image

from sr3_desktop import cli
from sr3_desktop.core.errors import ImageSaveError, ModelError, SR3Error
from sr3_desktop.core.imageio import SUPPORTED_EXTENSIONS, TEMP_PREFIX, OutputExistsError, load_image, save_image
from sr3_desktop.core.imageio.formats import OUTPUT_FORMATS, SAVE_FORMATS, open_dialog_filter, output_format
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.denoiser import get_denoiser
from sr3_desktop.core.model_files.registry import ModelEntry, import_model
from sr3_desktop.core.upscale import flow
from sr3_desktop.core.upscale.estimate import RunEstimate
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineStep
from sr3_desktop.core.upscale.run_models import Models, regression_for

RNG = np.random.default_rng(3)


def write_png(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    Image.fromarray((RNG.uniform(0, 1, (size[1], size[0], channels)) * 255).astype(np.uint8), mode).save(path)
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# --- finding images ------------------------------------------------------------------------------
def test_find_images_one_rule(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    wanted = [touch(root / "a.png"), touch(root / "B.JPG"), touch(root / "c.jfif"),
              touch(root / "deep" / "er" / "d.tif")]
    for unwanted in ("notes.txt", "scan.pdf", ".hidden.png", f"{TEMP_PREFIX}123-abc-def.png", ".git/e.png",
                     "out/f.png"):
        touch(root / unwanted)
    (root / "folder.png").mkdir()  # a folder with an image suffix is not an image
    assert flow.find_images(root, skip=root / "out") == sorted(wanted)
    assert flow.find_images(root / "out", skip=root / "out") == []  # the output folder is never searched
    assert flow.find_images(root / "out", skip=root) == []
    with pytest.raises(SR3Error, match="folder not found"):
        flow.find_images(root / "a.png")


@pytest.mark.parametrize("suffix", SUPPORTED_EXTENSIONS)
def test_find_images_accepts_every_suffix_the_loader_accepts(tmp_path: Path, suffix: str) -> None:
    lower, upper = touch(tmp_path / f"x{suffix}"), touch(tmp_path / f"Y{suffix.upper()}")
    assert flow.find_images(tmp_path) == sorted([lower, upper])


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    image = touch(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in", target_is_directory=True)
    assert flow.find_images(tmp_path / "in") == [image]


def test_the_exporter_finds_training_images_by_the_same_rule(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from exporter.training import data

    for name in ("a.png", "b.gif", "c.bmp", ".d.png", "sub/e.webp", ".cache/f.png", "g.txt"):
        touch(tmp_path / name)
    assert data.find_images(tmp_path) == flow.find_images(tmp_path)
    assert [p.name for p in data.find_images(tmp_path)] == ["a.png", "b.gif", "c.bmp", "e.webp"]
    with pytest.raises(data.DataError, match="training data folder not found"):
        data.find_images(tmp_path / "missing")


# --- the format table ----------------------------------------------------------------------------
@pytest.mark.parametrize(("word", "name"), [("png", "png"), (".PNG", "png"), ("jpg", "jpg"), ("jpeg", "jpg"),
                                            (".JPE", "jpg"), ("jfif", "jpg"), ("webp", "webp"), ("tif", "tiff"),
                                            (".tiff", "tiff"), ("bmp", None), ("gif", None), ("", None)])
def test_one_format_table(word: str, name: str | None) -> None:
    found = output_format(word)
    assert (found.name if found else None) == name


def test_the_table_agrees_with_the_loader_and_the_encoder(tmp_path: Path) -> None:
    assert SAVE_FORMATS == ("png", "jpg", "webp", "tiff")
    pixels = RNG.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    decoded_as = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
    for fmt in OUTPUT_FORMATS:
        for suffix in fmt.suffixes:  # what we write, we can read back; every alias encodes that format
            assert suffix in SUPPORTED_EXTENSIONS
            path = save_image(tmp_path / f"out-{fmt.name}{suffix}", pixels)
            with Image.open(path) as image:
                assert image.format == decoded_as[fmt.name]
    assert OUTPUT_FORMATS[1].dialog_filter() == "JPEG image (*.jpg *.jpeg *.jpe *.jfif)"
    dialog = open_dialog_filter()
    assert all(f"*{suffix}" in dialog for suffix in (".apng", ".jfif", ".mpo", ".dib", ".gif", ".bmp"))


def test_choose_format() -> None:
    assert flow.choose_format(None) == "png"
    assert flow.choose_format("jpeg") == "jpg"
    assert flow.choose_format(None, Path("x.TIF")) == "tiff"
    assert flow.choose_format("tiff", Path("x.tif")) == "tiff"
    with pytest.raises(SR3Error, match="says png but --format says jpg"):
        flow.choose_format("jpg", Path("x.png"))
    with pytest.raises(SR3Error, match=r"cannot tell the format from x\.bmp"):
        flow.choose_format(None, Path("x.bmp"))
    with pytest.raises(SR3Error, match="cannot tell the format from x"):
        flow.choose_format(None, Path("x"))


# --- planning ------------------------------------------------------------------------------------
def test_plan_outputs_keeps_the_structure_and_both_of_a_name_clash(tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    a, a_jpg = touch(folder / "a.png"), touch(folder / "a.jpg")
    b = touch(folder / "day2" / "b.jpeg")
    loose = touch(tmp_path / "loose.webp")
    out = tmp_path / "out"
    touch(folder / "out-inside" / "old.png")
    plan = flow.plan_outputs([folder, loose, loose, tmp_path / "gone.png"], out, "jpg")
    assert [(i.source, i.target, i.label) for i in plan.items] == [
        (a_jpg, out / "a.jpg", "a.jpg"),
        (a, out / "a_png.jpg", "a.png"),  # a.png and a.jpg both become a.jpg: the later keeps its suffix
        (b, out / "day2" / "b.jpg", "day2/b.jpeg"),
        (folder / "out-inside" / "old.png", out / "out-inside" / "old.jpg", "out-inside/old.png"),
        (loose, out / "loose.jpg", "loose.webp"),  # named twice, planned once
    ]
    assert plan.missing == (tmp_path / "gone.png",) and not plan.single
    nested = flow.plan_outputs([folder], out, "png", nest_folders=True)
    assert [(i.target, i.label) for i in nested.items][2] == (out / "holiday" / "day2" / "b.png", "holiday/day2/b.jpeg")
    skipping = flow.plan_outputs([folder], folder / "out-inside", "png")
    assert all("out-inside" not in str(i.source) for i in skipping.items) and len(skipping.items) == 3
    assert flow.plan_outputs([folder], out, "png").items[0].uncertainty_target == out / "a_uncertainty.png"


def test_plan_single(tmp_path: Path) -> None:
    source = touch(tmp_path / "a.png")
    plan = flow.plan_single(source, tmp_path / "result", "webp")
    assert plan.single and [i.target for i in plan.items] == [tmp_path / "result.webp"]
    assert flow.plan_single(source, tmp_path / "r.JPEG").items[0].target == tmp_path / "r.JPEG"
    assert flow.plan_single(tmp_path / "nope.png", tmp_path / "r.png").missing == (tmp_path / "nope.png",)
    with pytest.raises(SR3Error, match="exactly one input"):
        flow.plan_single(tmp_path, tmp_path / "r.png")


# --- the existing-output rule --------------------------------------------------------------------
def test_skip_reason(tmp_path: Path) -> None:
    item = flow.Item(tmp_path / "in.png", tmp_path / "out.png", "in.png")
    assert flow.skip_reason(item, overwrite=False, single=False) is None
    assert flow.skip_reason(item, overwrite=False, single=True) is None
    item.target.write_bytes(b"earlier")
    reason = flow.skip_reason(item, overwrite=False, single=False)
    assert reason == f"{item.target} already exists (pass --overwrite to redo it)"
    assert flow.skip_reason(item, overwrite=True, single=False) is None
    assert flow.skip_reason(item, overwrite=True, single=True) is None
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        flow.skip_reason(item, overwrite=False, single=True)
    folder_item = flow.Item(item.source, tmp_path / "dir.png", "in.png")
    folder_item.target.mkdir()
    for overwrite in (False, True):
        with pytest.raises(ImageSaveError, match="a folder with that name exists"):
            flow.skip_reason(folder_item, overwrite=overwrite, single=False)


def test_upscale_item_skips_redoes_and_never_makes_a_numbered_copy(tmp_path: Path) -> None:
    source = write_png(tmp_path / "in" / "a.png", mode="RGBA")
    item = flow.plan_outputs([tmp_path / "in"], tmp_path / "out", "png").items[0]
    options = RefineOptions(method="bicubic")
    models = Models(scale=4)
    first = flow.upscale_item(item, options, models, "png")
    assert first.status == "written" and first.written == (item.target,)
    with Image.open(item.target) as image:
        assert image.size == (48, 40) and image.mode == "RGBA"
    item.target.write_bytes(b"not an image, but it exists")
    again = flow.upscale_item(item, options, models, "png")
    assert again.status == "skipped" and again.written == () and "already exists" in again.notes[0]
    assert item.target.read_bytes() == b"not an image, but it exists"
    with pytest.raises(OutputExistsError):
        flow.upscale_item(item, options, models, "png", single=True)
    redone = flow.upscale_item(item, options, models, "png", overwrite=True)
    assert redone.status == "written" and load_image(item.target).size == (48, 40)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png"] and source.is_file()


def test_a_file_that_appears_during_the_run_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    pixels = RNG.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    save_image(target, pixels)
    with pytest.raises(OutputExistsError, match="already exists"):
        save_image(target, pixels)  # the race after skip_reason said "make it": still no copy, no clobber
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


# --- one item through the SR3 chain --------------------------------------------------------------
class Recorder:
    """A flow.Progress that records the steps and aborts after ``stop_after`` of them."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.estimates: list[RunEstimate] = []
        self.stop_after = stop_after

    def aborted(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after

    def started(self, estimate: RunEstimate) -> None:
        self.estimates.append(estimate)

    def set_progress(self, step: RefineStep) -> None:
        self.steps.append((step.step, step.total))


@pytest.fixture
def sr3_model(tmp_path: Path) -> Models:
    return Models(sr3=get_denoiser(save(local_sr3(name="batch-local"), tmp_path / "local.onnx"), "cpu"))


def test_upscale_item_reports_progress_and_writes_the_uncertainty_first(tmp_path: Path,
                                                                        sr3_model: Models) -> None:
    write_png(tmp_path / "in" / "a.png")
    item = flow.plan_outputs([tmp_path / "in" / "a.png"], tmp_path / "out", "jpg").items[0]
    recorder = Recorder()
    done = flow.upscale_item(item, RefineOptions(preset="quality", samples=2), sr3_model, "jpg", progress=recorder)
    assert recorder.steps == [(k, 20) for k in range(1, 21)]
    assert done.status == "written" and done.written == (item.target, item.uncertainty_target)
    assert load_image(item.target).size == (48, 40) and load_image(item.uncertainty_target).size == (48, 40)
    assert done.result is not None and done.result.uncertainty is not None
    # the image is published last, so "the image exists" means "the item is complete": it is skipped
    item.uncertainty_target.unlink()
    assert flow.upscale_item(item, RefineOptions(preset="quality", samples=2), sr3_model, "jpg").status == "skipped"
    # proof of the order: when the image cannot be written, its uncertainty map already was
    item.target.unlink()
    with pytest.raises(ImageSaveError, match=r"Refusing to write a\.jpg"):
        flow.upscale_item(item, RefineOptions(preset="quality", samples=2), sr3_model, "jpg", protected=[item.target])
    assert item.uncertainty_target.is_file() and not item.target.exists()


def test_an_aborted_item_writes_nothing(tmp_path: Path, sr3_model: Models) -> None:
    write_png(tmp_path / "in" / "a.png")
    item = flow.plan_outputs([tmp_path / "in"], tmp_path / "out", "png").items[0]
    recorder = Recorder(stop_after=3)
    done = flow.upscale_item(item, RefineOptions(preset="quality"), sr3_model, "png", progress=recorder)
    assert done.status == "cancelled" and done.written == () and len(recorder.steps) == 3
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# --- the start-estimate rule ---------------------------------------------------------------------
def entry(card: ModelCard, stem: str, bundled: bool = True) -> ModelEntry:
    return ModelEntry(card.name, Path(f"/models/{stem}.onnx"), card, bundled)


REG_DEFAULT = entry(make_card("regression", name="Regression Photo 4x"), "regression-photo-4x")
REG_OTHER = entry(make_card("regression", name="Other Regression"), "other-regression", bundled=False)
REG_2X = entry(make_card("regression", name="Two X", scale=2), "two-x")
ENTRIES = [REG_OTHER, REG_2X, REG_DEFAULT]


def test_a_preset_that_starts_from_regression_loads_the_default_regression_model() -> None:
    card = make_card("sr3")  # presets: fast from bicubic, balanced from regression, quality from noise
    assert regression_for(card, RefineOptions(preset="balanced"), ENTRIES).entry == REG_DEFAULT
    assert regression_for(card, RefineOptions(), ENTRIES).entry == REG_DEFAULT  # default preset: balanced
    assert regression_for(card, RefineOptions(preset="balanced"), ENTRIES, "other regression").entry == REG_OTHER
    assert regression_for(card, RefineOptions(preset="balanced"), ENTRIES, "Two X").entry == REG_DEFAULT
    for preset in ("fast", "quality"):
        assert regression_for(card, RefineOptions(preset=preset), ENTRIES).entry is None
    assert regression_for(card, RefineOptions(preset="balanced"), [REG_2X]).entry is None  # wrong scale
    assert regression_for(card, RefineOptions(method="bicubic", preset="balanced"), ENTRIES).entry is None
    custom = RefineOptions(preset="mine", custom_preset=card.preset("balanced"))
    assert regression_for(card, custom, ENTRIES).entry == REG_DEFAULT


def test_a_regression_conditioned_card_loads_the_model_it_names() -> None:
    card = make_card("sr3", condition="regression", condition_model="Other Regression")
    for preset in ("fast", "balanced", "quality"):  # required whatever the chain's start
        choice = regression_for(card, RefineOptions(preset=preset), ENTRIES, preferred="Regression Photo 4x")
        assert choice.entry == REG_OTHER and choice.notes == ()
    by_stem = make_card("sr3", condition="regression", condition_model="other-regression")
    assert regression_for(by_stem, RefineOptions(preset="quality"), ENTRIES).entry == REG_OTHER


def test_a_missing_condition_model_falls_back_to_the_default_with_a_note() -> None:
    card = make_card("sr3", name="Refiner", condition="regression", condition_model="Gone Model")
    choice = regression_for(card, RefineOptions(preset="quality"), ENTRIES)
    assert choice.entry == REG_DEFAULT
    assert choice.notes == ("the regression model 'Gone Model' that Refiner refines is not installed: using "
                            "Regression Photo 4x instead",)
    wrong_scale = make_card("sr3", name="Refiner", condition="regression", condition_model="Two X")
    choice = regression_for(wrong_scale, RefineOptions(preset="quality"), ENTRIES)
    assert choice.entry == REG_DEFAULT and "upscales 2x, not 4x" in choice.notes[0]
    with pytest.raises(ModelError, match="refines the output of the regression model 'Gone Model', which is not"):
        regression_for(card, RefineOptions(preset="quality"), [REG_2X])


def test_the_cli_loads_the_paired_regression_model(tmp_path: Path, empty_model_folders: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR3_THREADS", "1")
    bundled, _ = empty_model_folders
    save(regression(name="Regression Photo 4x"), bundled / "regression-photo-4x.onnx")
    import_model(save(regression(name="Paired Regression"), tmp_path / "paired.onnx"))
    refiner = save(local_sr3(name="Refiner", condition="regression", condition_model="Paired Regression"),
                   tmp_path / "refiner.onnx")
    write_png(tmp_path / "in" / "a.png")
    err = io.StringIO()
    code = cli.main(["upscale", str(tmp_path / "in" / "a.png"), "-o", str(tmp_path / "a-up.png"), "--model",
                     str(refiner), "--preset", "quality"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    assert "using Refiner on CPUExecutionProvider (start estimates from Paired Regression)" in err.getvalue()
    assert load_image(tmp_path / "a-up.png").size == (48, 40)
