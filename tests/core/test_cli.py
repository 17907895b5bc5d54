"""The command line end to end: outputs, naming, bad files in a batch, exit codes, no tracebacks."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, oracle_sr3, regression, save
from PIL import Image
from sample_inputs import write_sample_inputs

import sr3_desktop.__main__ as entry
from sr3_desktop import cli
from sr3_desktop.core.imageio import atomic
from sr3_desktop.core.model_files import folders
from sr3_desktop.core.model_files import registry as models
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.upscale import flow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_model_folders: tuple[Path, Path]) -> Path:
    """Empty bundled and data folders, two input images (one RGBA in a sub-folder) and a bad file."""
    monkeypatch.setenv("SR3_THREADS", "1")
    write_sample_inputs(tmp_path / "in")
    (tmp_path / "in" / "bad.png").write_bytes(b"this is not a png")
    save(oracle_sr3(name="fixture-oracle"), tmp_path / "models" / "oracle.onnx")
    save(local_sr3(name="fixture-local"), tmp_path / "models" / "local.onnx")
    save(regression(name="fixture-regression"), tmp_path / "models" / "regression.onnx")
    return tmp_path


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_batch_with_a_bad_file_in_a_fresh_interpreter(env: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sr3_desktop", "upscale", str(env / "in"), "--out-dir", str(env / "out"),
         "--model", str(env / "models" / "local.onnx"), "--preset", "quality"],
        capture_output=True, text=True, cwd=REPO, timeout=240, env={**os.environ},
    )
    assert result.returncode == 1
    assert size_of(env / "out" / "a.png") == (48, 40)
    assert size_of(env / "out" / "sub" / "b.png") == (32, 32)
    with Image.open(env / "out" / "sub" / "b.png") as b:
        assert b.mode == "RGBA"  # alpha kept, upscaled separately
    assert not (env / "out" / "bad.png").exists()
    assert "bad.png" in result.stderr and "done: 2 written, 1 failed" in result.stderr
    assert "step 10/10" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == [str(env / "out" / "a.png"), str(env / "out" / "sub" / "b.png")]


@pytest.mark.parametrize(
    ("method", "model"), [("bicubic", None), ("regression", "regression.onnx"), ("sr3", "oracle.onnx")]
)
def test_each_method_writes_one_file(env: Path, method: str, model: str | None) -> None:
    target = env / f"{method}.png"
    args = ["upscale", str(env / "in" / "a.png"), "-o", str(target), "--method", method, "--quiet"]
    if model:
        args += ["--model", str(env / "models" / model)]
    code, out, err = call(*args)
    assert code == 0, err
    assert out.strip() == str(target) and err == ""
    assert size_of(target) == (48, 40)


def test_out_dir_naming_format_and_overwrite(env: Path) -> None:
    args = ["upscale", str(env / "in" / "a.png"), "--out-dir", str(env / "out"), "--method", "bicubic",
            "--format", "jpeg"]
    code, out, _ = call(*args)
    assert code == 0 and out.strip() == str(env / "out" / "a.jpg")  # "jpeg" is the one table's jpg
    (env / "out" / "a.jpg").write_bytes(b"an earlier result")
    code, out, err = call(*args)  # an existing output is skipped and said to be skipped
    assert code == 0 and out == ""
    assert f"skipped: {env / 'out' / 'a.jpg'} already exists" in err
    assert "done: 0 written, 1 skipped (output exists), 0 failed" in err
    assert (env / "out" / "a.jpg").read_bytes() == b"an earlier result"
    code, out, _ = call(*args, "--overwrite")
    assert code == 0 and out.strip() == str(env / "out" / "a.jpg")
    assert size_of(env / "out" / "a.jpg") == (48, 40)
    assert sorted(p.name for p in (env / "out").iterdir()) == ["a.jpg"]  # never an "a (1).jpg"


def test_an_existing_single_output_is_an_error_unless_overwrite(env: Path) -> None:
    target = env / "x.png"
    target.write_bytes(b"keep me")
    args = ["upscale", str(env / "in" / "a.png"), "-o", str(target), "--method", "bicubic"]
    code, out, err = call(*args)
    assert code == 1 and out == ""
    assert f"error: {target} already exists; pass --overwrite to replace it" in err
    assert target.read_bytes() == b"keep me" and sorted(p.name for p in env.glob("x*")) == ["x.png"]
    code, out, _ = call(*args, "--overwrite")
    assert code == 0 and out.strip() == str(target) and size_of(target) == (48, 40)


def test_samples_write_an_uncertainty_image(env: Path) -> None:
    code, out, err = call("upscale", str(env / "in" / "a.png"), "--out-dir", str(env / "out"), "--samples", "2",
                          "--model", str(env / "models" / "local.onnx"), "--preset", "quality", "--seed", "3")
    assert code == 0, err
    assert out.split() == [str(env / "out" / "a.png"), str(env / "out" / "a_uncertainty.png")]
    assert size_of(env / "out" / "a_uncertainty.png") == (48, 40)
    assert "step 20/20" in err


def test_default_models_and_the_models_command(env: Path) -> None:
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "x.png"))
    assert code == 1 and "no sr3 model is installed" in err
    models.import_model(env / "models" / "oracle.onnx")
    models.import_model(env / "models" / "regression.onnx")
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "x.png"), "--preset", "balanced")
    assert code == 0, err
    assert "start estimates from fixture-regression" in err
    code, out, _ = call("models")
    assert code == 0
    assert "fixture-oracle  [imported]" in out and "fixture-regression  [imported]" in out
    assert "preset balanced (default): 6 steps, ddim eta=0, from noised regression @ strength 0.5" in out
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "y.png"), "--model", "nonesuch")
    assert code == 1 and "available sr3 models: fixture-oracle" in err


def test_detail_amplifies_the_sr3_texture_and_refuses_nonsense(env: Path) -> None:
    """--detail G reaches the chain (a bicubic-anchored model without a cap: G x the detail it adds over
    bicubic, and the same image for G = 1); 0 is refused before any work. Mutations caught: the
    flag not passed into RefineOptions, or the chain ignoring the override."""
    a, model = str(env / "in" / "a.png"), str(env / "models" / "local.onnx")
    runs = {}
    for name, extra in {"plain": [], "one": ["--detail", "1"], "more": ["--detail", "2"]}.items():
        code, _, err = call("upscale", a, "-o", str(env / f"{name}.png"), "--model", model, "--preset", "quality",
                            *extra)  # (quality: no back-projection, which would take the gain's low band back out)
        assert code == 0, err
        runs[name] = np.asarray(Image.open(env / f"{name}.png"), dtype=np.float64)
    np.testing.assert_array_equal(runs["plain"], runs["one"])
    bicubic = call("upscale", a, "-o", str(env / "bic.png"), "--method", "bicubic")
    assert bicubic[0] == 0
    base = np.asarray(Image.open(env / "bic.png"), dtype=np.float64)
    added, more = runs["plain"] - base, runs["more"] - base
    unclipped = (np.abs(added) > 8) & (runs["plain"] > 0) & (runs["plain"] < 255) & (runs["more"] > 0) & (
        runs["more"] < 255)
    assert unclipped.sum() > 100
    assert 1.8 < float(np.median(more[unclipped] / added[unclipped])) < 2.2  # twice the added detail
    code, _, err = call("upscale", a, "-o", str(env / "zero.png"), "--model", model, "--detail", "0")
    assert code == 1 and "--detail must be a number > 0" in err and not (env / "zero.png").exists()


def test_grain_adds_the_inputs_noise_to_flat_areas_and_refuses_nonsense(env: Path) -> None:
    """--grain K reaches the chain: on a noisy grey input the fine band of the output rises with K (0: none,
    as without a preset grain); a negative K is refused before any work. Mutation caught: the flag not passed
    into RefineOptions."""
    noisy = np.clip(128 + np.random.default_rng(3).normal(0, 3, (24, 24, 1)), 0, 255).repeat(3, axis=2)
    source = env / "in" / "noisy.png"
    Image.fromarray(noisy.astype(np.uint8)).save(source)
    model, fine = str(env / "models" / "oracle.onnx"), {}  # the exact x0: a smooth upscale of the grey
    for k in ("0", "4"):
        code, _, err = call("upscale", str(source), "-o", str(env / f"g{k}.png"), "--model", model,
                            "--preset", "quality", "--grain", k)
        assert code == 0, err
        out = np.asarray(Image.open(env / f"g{k}.png"), dtype=np.float64)[..., 1]
        fine[k] = float(np.std(out[1:-1, 1:-1] - (out[:-2, 1:-1] + out[2:, 1:-1] + out[1:-1, :-2] + out[1:-1, 2:]) / 4))
    assert fine["4"] > 1.5 * fine["0"] + 0.5
    code, _, err = call("upscale", str(source), "-o", str(env / "neg.png"), "--model", model, "--grain", "-1")
    assert code == 1 and "--grain must be a number >= 0" in err and not (env / "neg.png").exists()


def test_usage_mistakes(env: Path) -> None:
    a, b = str(env / "in" / "a.png"), str(env / "in" / "sub" / "b.png")
    code, _, err = call("upscale", a, b, "-o", str(env / "x.png"), "--method", "bicubic")
    assert code == 1 and "exactly one input" in err
    with pytest.raises(SystemExit):  # argparse: --preset and --steps exclude each other
        cli.build_parser().parse_args(["upscale", a, "-o", "x.png", "--preset", "fast", "--steps", "3"])
    assert call("upscale", a, "-o", "x.png", "--preset", "fast", "--steps", "3")[0] == 2
    code, _, err = call("upscale", a, "-o", str(env / "x.bmp"), "--method", "bicubic")
    assert code == 1 and "cannot tell the format" in err
    code, _, err = call("upscale", a, "-o", str(env / "x.png"), "--format", "jpg", "--method", "bicubic")
    assert code == 1 and "says png but --format says jpg" in err
    code, _, err = call("upscale", str(env / "missing.png"), "--out-dir", str(env / "out"), "--method", "bicubic")
    assert code == 1 and "missing.png: file not found" in err
    code, _, err = call("upscale", a, "-o", str(env / "x.png"), "--model", str(env / "models" / "local.onnx"),
                        "--tile", "4")
    assert code == 1 and "too small" in err
    assert "Traceback" not in err


def test_without_the_upscale_word(env: Path) -> None:
    code, out, _ = call(str(env / "in" / "a.png"), "-o", str(env / "plain.png"), "--method", "bicubic")
    assert code == 0 and out.strip() == str(env / "plain.png")


def test_unexpected_errors_go_to_a_log_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(flow, "load_image", broken)
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "x.png"), "--method", "bicubic")
    assert code == 2 and "Traceback" not in err and "RuntimeError" in err
    log = env / "data" / "logs" / "cli.log"
    assert str(log) in err and "RuntimeError: a bug" in log.read_text()


def test_ctrl_c_during_a_save_leaves_no_partial_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C lands while the second output is being published (its temp file fully written):
    the first output stays, complete, and nothing else is left, not even the temp file."""
    publish = atomic._publish
    calls: list[Path] = []

    def interrupted_publish(temp: Path, target: Path, overwrite: bool) -> None:
        if target.parent == env / "data":  # the remembered speeds (core.upscale.estimate), not an output
            publish(temp, target, overwrite)
            return
        calls.append(temp)
        if len(calls) == 2:
            assert temp.is_file() and temp.stat().st_size > 0  # the interrupt comes mid-save
            raise KeyboardInterrupt
        publish(temp, target, overwrite)

    monkeypatch.setattr(atomic, "_publish", interrupted_publish)
    code, out, err = call("upscale", str(env / "in"), "--out-dir", str(env / "out"),
                          "--model", str(env / "models" / "local.onnx"), "--preset", "fast")
    assert code == 130 and "interrupted: no partial files were left behind" in err
    assert out.split() == [str(env / "out" / "a.png")] and len(calls) == 2
    assert [p for p in (env / "out").rglob("*") if p.is_file()] == [env / "out" / "a.png"]
    assert size_of(env / "out" / "a.png") == (48, 40)


def test_stale_temp_files_are_cleaned(env: Path) -> None:
    (env / "out").mkdir()
    stale = env / "out" / ".sr3tmp-0123456789abcdef.png"
    stale.write_bytes(b"partial")
    os.utime(stale, (1_000_000, 1_000_000))
    assert call("upscale", str(env / "in" / "a.png"), "--out-dir", str(env / "out"), "--method", "bicubic")[0] == 0
    assert not stale.exists()


def test_main_module_routes_to_cli_or_window(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert entry.wants_cli(["upscale", "x"]) and entry.wants_cli(["models"]) and entry.wants_cli(["--help"])
    assert not entry.wants_cli([]) and not entry.wants_cli(["photo.png"])
    opened: list[list[str]] = []

    def fake_window(files: list[str]) -> int:
        opened.append(files)
        return 0

    import sr3_desktop.qt.app as app

    monkeypatch.setattr(app, "main", fake_window)
    assert entry.main([]) == 0 and entry.main(["a.png", "b.png"]) == 0
    assert opened == [[], ["a.png", "b.png"]]
    assert entry.main(["models"]) == 0


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from model_factory import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def test_cli_on_tiny_exported_models(env: Path, tiny_models: tuple[Path, Path]) -> None:
    """The exporter's real (tiny, untrained) models: a default-preset SR3 run, a short one, regression."""
    sr3, reg = tiny_models
    scale = models.resolve_model(str(sr3), "sr3").card.scale
    image = str(env / "in" / "a.png")
    runs = {
        "default": ["--model", str(sr3)],
        "two-steps": ["--model", str(sr3), "--steps", "2", "--seed", "5"],
        "regression": ["--method", "regression", "--model", str(reg)],
    }
    for name, extra in runs.items():
        target = env / f"tiny-{name}.png"
        code, out, err = call("upscale", image, "-o", str(target), *extra)
        assert code == 0, err
        assert out.strip() == str(target) and "Traceback" not in err
        assert size_of(target) == (12 * scale, 10 * scale)


# --- issue 11: output scale, the estimate, the model probe paid once ----------------------------------
def write_photo(path: Path, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.uniform(0, 1, (size[1], size[0], 3)) * 255).astype(np.uint8)).save(path, quality=90)
    return path


@pytest.mark.parametrize(("method", "model"), [("bicubic", None), ("regression", "regression.onnx"),
                                               ("sr3", "oracle.onnx")])
def test_scale_2_on_a_512x320_photo_gives_1024x640(env: Path, method: str, model: str | None) -> None:
    photo = write_photo(env / "photo.jpg", (512, 320))
    args = ["upscale", str(photo), "--out-dir", str(env / "out"), "--method", method, "--scale", "2", "--quiet"]
    code, _, err = call(*args, *(["--model", str(env / "models" / model)] if model else []))
    assert code == 0, err
    assert size_of(env / "out" / "photo.png") == (1024, 640)


def test_width_or_height_keep_the_aspect_and_exclude_the_scale(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = env / "in" / "a.png"  # 12 x 10
    cases = (("--width", "30", (30, 25)), ("--height", "33", (40, 33)), ("--scale", "3", (36, 30)))
    for flag, value, expected in cases:
        target = env / f"a{flag}.png"
        code, _, err = call("upscale", str(a), "-o", str(target), "--method", "bicubic", flag, value, "--quiet")
        assert code == 0, err
        assert size_of(target) == expected
    code, _, _ = call("upscale", str(a), "-o", str(env / "x.png"), "--method", "bicubic", "--scale", "2",
                      "--width", "30")
    assert code == 2 and "not allowed with argument" in capsys.readouterr().err  # argparse prints it
    code, _, err = call("upscale", str(a), "-o", str(env / "x.png"), "--method", "bicubic", "--width", "49")
    assert code == 1 and "--width 49" in err and "12 to 48" in err
    assert not (env / "x.png").exists()


def test_the_estimate_is_printed_before_the_progress_bar(env: Path) -> None:
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "a.png"), "--model",
                        str(env / "models" / "local.onnx"), "--preset", "quality")
    assert code == 0, err
    lines = err.splitlines()
    measuring = next(i for i, line in enumerate(lines) if line.startswith("note: measuring this computer's speed"))
    estimated = next(i for i, line in enumerate(lines) if line.startswith("a.png: estimated time about"))
    progress = next(i for i, line in enumerate(lines) if line.startswith("a.png  ["))
    assert measuring < estimated < progress
    assert "fixture-local: 10 passes over" in lines[estimated]
    again = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "b.png"), "--model",
                 str(env / "models" / "local.onnx"), "--preset", "quality")[2]
    assert "measuring" not in again and "a.png: estimated time about" in again  # remembered


def counted_probe(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The real probe, counted."""
    calls: list[Path] = []
    real = models.probe

    def probe(path: Path, *args: object, **kwargs: object) -> ModelCard:
        calls.append(Path(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "probe", probe)
    return calls


def test_a_model_file_is_probed_once_until_it_changes(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counted_probe(monkeypatch)
    model = env / "models" / "local.onnx"
    args = ["upscale", str(env / "in" / "a.png"), "--out-dir", str(env / "out"), "--model", str(model),
            "--preset", "fast", "--quiet", "--overwrite"]
    assert call(*args)[0] == 0 and len(calls) == 1
    assert call(*args)[0] == 0 and len(calls) == 1  # remembered: (path, size, mtime, sha256) unchanged
    record = json.loads((env / "data" / models.VALIDATED_FILE).read_text())
    assert record[-1]["path"] == str(model.resolve()) and len(record[-1]["sha256"]) == 64
    save(local_sr3(name="fixture-local", seed=9), model)  # new weights, same name: probed again
    assert call(*args)[0] == 0 and len(calls) == 2
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: probed again
    assert call(*args)[0] == 0 and len(calls) == 3


def test_models_in_the_model_folders_are_not_probed(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counted_probe(monkeypatch)
    folder = folders.user_models_dir()
    folder.mkdir(parents=True)
    installed = save(local_sr3(name="installed-local"), folder / "installed-local.onnx")
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(env / "i.png"), "--model", str(installed),
                        "--preset", "fast", "--quiet")
    assert code == 0, err
    assert calls == []
    outside = save(local_sr3(name="outside-local"), env / "elsewhere" / "outside-local.onnx")
    assert call("upscale", str(env / "in" / "a.png"), "-o", str(env / "o.png"), "--model", str(outside),
                "--preset", "fast", "--quiet")[0] == 0
    assert calls == [outside.resolve()] or calls == [outside]
