"""CLI faults of issue 7: same seed -> same bytes across runs; stale temp files cleaned at start."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from onnx_fixtures import local_sr3, save
from PIL import Image
from sample_inputs import write_sample_inputs

from sr3_desktop import cli
from sr3_desktop.core.imageio import SAVE_FORMATS, TEMP_PREFIX

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_model_folders: tuple[Path, Path]) -> Path:
    """Empty bundled and data folders, an RGB and an RGBA input, and a seed-dependent SR3 model."""
    monkeypatch.setenv("SR3_THREADS", "1")
    write_sample_inputs(tmp_path / "in")
    save(local_sr3(name="fixture-local"), tmp_path / "local.onnx")
    return tmp_path


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def run_fresh(env: Path, target: Path, seed: int) -> bytes:
    """One CLI run in its own interpreter, as a user would start it twice; the output's bytes."""
    result = subprocess.run(
        [sys.executable, "-m", "sr3_desktop", "upscale", str(env / "in" / "sub" / "b.png"), "-o", str(target),
         "--model", str(env / "local.onnx"), "--preset", "quality", "--seed", str(seed), "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    return target.read_bytes()


def test_same_seed_twice_gives_identical_bytes_in_separate_runs(env: Path) -> None:
    first = run_fresh(env, env / "first.png", seed=7)
    second = run_fresh(env, env / "second.png", seed=7)
    assert first == second
    with Image.open(env / "first.png") as image:
        assert image.size == (32, 32) and image.mode == "RGBA"
    # the seed matters: the local model does not know the answer, so another seed gives another image
    code, _, err = call("upscale", str(env / "in" / "sub" / "b.png"), "-o", str(env / "other.png"),
                        "--model", str(env / "local.onnx"), "--preset", "quality", "--seed", "8", "--quiet")
    assert code == 0, err
    assert (env / "other.png").read_bytes() != first


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_same_seed_twice_gives_identical_bytes_in_every_format(env: Path, fmt: str) -> None:
    args = ["upscale", str(env / "in" / "a.png"), "--out-dir", str(env / "out"), "--model", str(env / "local.onnx"),
            "--preset", "fast", "--seed", "11", "--format", fmt, "--quiet"]
    code, first, err = call(*args)
    assert code == 0, err
    code, second, err = call(*args)  # written next to the first as "a (1).<fmt>"
    assert code == 0, err
    assert first.strip() != second.strip()
    assert Path(first.strip()).read_bytes() == Path(second.strip()).read_bytes()


def test_stale_temp_files_are_cleaned_in_every_output_folder_and_fresh_ones_kept(env: Path) -> None:
    """Complements test_cli.py::test_stale_temp_files_are_cleaned: -o's folder, nested output folders,
    and a temp file young enough to belong to a save still running elsewhere is left alone."""
    single, nested = env / "single", env / "out" / "sub"
    elsewhere = env / "elsewhere"
    for folder in (single, nested, elsewhere):
        folder.mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    stale = [single / f"{TEMP_PREFIX}00000000deadbeef.png", nested / f"{TEMP_PREFIX}11111111deadbeef.jpg"]
    untouched = [single / f"{TEMP_PREFIX}22222222deadbeef.png", elsewhere / f"{TEMP_PREFIX}33333333deadbeef.png"]
    for path in stale + untouched:
        path.write_bytes(b"partial")
    for path in [*stale, untouched[1]]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    code, _, err = call("upscale", str(env / "in" / "a.png"), "-o", str(single / "a.png"), "--method", "bicubic")
    assert code == 0, err
    code, _, err = call("upscale", str(env / "in"), "--out-dir", str(env / "out"), "--method", "bicubic")
    assert code == 0, err
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"partial" for path in untouched)  # fresh, or not an output folder
    assert sorted(p.name for p in single.iterdir()) == sorted(["a.png", untouched[0].name])
    assert sorted(p.name for p in nested.iterdir()) == ["b.png"]
