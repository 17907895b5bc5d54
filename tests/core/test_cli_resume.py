"""Fault test (issue 12): a real CLI batch is killed with SIGKILL mid-run and run again.

Every output then exists exactly once, complete (byte-identical to an uninterrupted run's), with no
temp file left, and the second run did only the missing ones: its stdout lists just those, and its
stderr reports the others as skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, save
from PIL import Image

from sr3_desktop.core.imageio import TEMP_PREFIX

REPO = Path(__file__).resolve().parents[2]
IMAGES = 6
STEPS = "50"  # about 0.2 s an image here: far longer than the few ms it takes to send the kill
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


@pytest.fixture
def batch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_model_folders: tuple[Path, Path]) -> Path:
    monkeypatch.setenv("SR3_THREADS", "1")
    rng = np.random.default_rng(12)
    for index in range(IMAGES):
        folder = tmp_path / "in" / ("sub" if index >= 4 else "")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.uniform(0, 1, (10, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{index}.png")
    save(local_sr3(name="resume-local"), tmp_path / "local.onnx")
    return tmp_path


def command(env: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sr3_desktop", "upscale", str(env / "in"), "--out-dir", str(out),
            "--model", str(env / "local.onnx"), "--steps", STEPS, "--seed", "4"]


def expected_outputs(out: Path) -> list[Path]:
    return [out / f"photo{i}.png" for i in range(4)] + [out / "sub" / f"photo{i}.png" for i in (4, 5)]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def run_until_the_first_output_then_kill(env: Path, out: Path) -> None:
    with (env / "killed.stderr").open("w") as stderr:
        child = subprocess.Popen(command(env, out), cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                 env={**os.environ})
        try:
            assert child.stdout is not None
            first = child.stdout.readline().strip()  # the CLI prints each output once it is published
            assert first == str(expected_outputs(out)[0]), (env / "killed.stderr").read_text()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL


def test_a_killed_batch_resumes_with_only_the_missing_outputs(batch_env: Path) -> None:
    env, out = batch_env, batch_env / "out"
    run_until_the_first_output_then_kill(env, out)
    finished = [p for p in expected_outputs(out) if p.exists()]
    assert 1 <= len(finished) < IMAGES, f"the kill did not land mid-run: {len(finished)} of {IMAGES} done"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished}

    second = subprocess.run(command(env, out), cwd=REPO, capture_output=True, text=True, timeout=240,
                            env={**os.environ})
    assert second.returncode == 0, second.stderr
    missing = [p for p in expected_outputs(out) if p not in before]
    assert second.stdout.split() == [str(p) for p in missing]  # did only the missing ones, once each
    for path in finished:
        assert f"skipped: {path} already exists" in second.stderr
    assert f"done: {len(missing)} written, {len(finished)} skipped (output exists), 0 failed" in second.stderr
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == before  # not rewritten

    # Exactly one file per output (no temp files, no "photo0 (1).png"), each complete: the same
    # bytes as an uninterrupted run's, and decodable at 4x the input size.
    assert files_under(out) == sorted(expected_outputs(out))
    reference = env / "reference"
    clean = subprocess.run(command(env, reference), cwd=REPO, capture_output=True, text=True, timeout=240,
                           env={**os.environ})
    assert clean.returncode == 0, clean.stderr
    for path, ref in zip(expected_outputs(out), expected_outputs(reference), strict=True):
        assert path.read_bytes() == ref.read_bytes(), f"{path.name} differs from an uninterrupted run's"
        with Image.open(path) as image:
            image.load()
            assert image.size == (48, 40)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from sr3_desktop.core.imageio import atomic_file
    with atomic_file(sys.argv[1]) as handle:
        handle.write(b"half of an image")
        handle.flush()
        print("writing", flush=True)
        time.sleep(600)
""")


def test_a_temp_file_of_a_killed_writer_is_removed_by_the_next_run(batch_env: Path) -> None:
    """A kill mid-save leaves a temp file; the next run removes it at once (its writer is gone), not
    only once it is a minute old, and leaves a live writer's temp file alone."""
    env, out = batch_env, batch_env / "out"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out / "photo0.png")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out / "photo1.png")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        for process in (writer, live):
            assert process.stdout is not None and process.stdout.readline().strip() == "writing"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        temps = sorted(p.name for p in out.iterdir() if p.name.startswith(TEMP_PREFIX))
        assert len(temps) == 2  # the killed writer's and the live one's
        done = subprocess.run([*command(env, out)[:-4], "--steps", "2"], cwd=REPO, capture_output=True, text=True,
                              timeout=240, env={**os.environ})
        assert done.returncode == 0, done.stderr
        left = [p.name for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(left) == 1 and str(live.pid) in left[0]  # the live writer's file is still its own
    finally:
        live.kill()
        live.wait(timeout=60)
    assert files_under(out) == sorted([*expected_outputs(out), out / left[0]])
