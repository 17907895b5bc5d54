"""End to end: the tiny preset trains (SR3 and regression), resumes, exports, verifies, and the card round-trips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from model_factory import make_photo_folder, make_tiny_models, train_tiny
from PIL import Image

from exporter.__main__ import COMMANDS, main
from exporter.export.export_onnx import export
from exporter.export.verify import TOLERANCE, verify
from exporter.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sr3_desktop.core.diffusion.schedule import ScheduleSpec
from sr3_desktop.core.model_files.card import read_card

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(sr3.onnx, regression.onnx, work dir) from the shared factory."""
    work = tmp_path_factory.mktemp("tiny-models")
    sr3, regression = make_tiny_models(work)
    return sr3, regression, work


@pytest.fixture(scope="module")
def photos(models: tuple[Path, Path, Path]) -> Path:
    return models[2] / "photos"


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_sr3_run_logs_loss_validation_and_sample_grid(models: tuple[Path, Path, Path]) -> None:
    run_dir = models[2] / "runs" / "sr3"
    ckpt = load_checkpoint(run_dir)
    assert ckpt["step"] == 4 and ckpt["kind"] == "sr3"
    rows = _log(run_dir)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and 0.0 <= r["data_share"] <= 1.0 for r in rows if "loss" in r)
    validation = [r for r in rows if "validation" in r]
    assert validation and {"psnr_bicubic", "val_loss", "psnr_model"} <= set(validation[-1]["validation"])
    grid = Image.open(run_dir / validation[-1]["grid"])
    assert grid.size == (4 * 32, 2 * 32)  # LR | bicubic | model | HR, one row per validation crop (tiny: 2)


def test_both_exports_pass_verify_with_parity(models: tuple[Path, Path, Path]) -> None:
    sr3, regression, work = models
    for onnx_path, run in ((sr3, "sr3"), (regression, "regression")):
        report = verify(onnx_path, work / "runs" / run)
        assert report.ok, report.failures
        sizes = {(e["height"], e["width"]) for e in report.parity}
        assert len(sizes) == 2 and all(e["batch"] == 2 for e in report.parity)
        assert all(e["max_abs_diff"] <= TOLERANCE for e in report.parity)


def test_parity_holds_for_non_trivial_weights(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A briefly trained net outputs almost zero (zero-initialised last conv); randomise it to test for real."""
    ckpt = load_checkpoint(models[2] / "runs" / "sr3")
    generator = torch.Generator().manual_seed(3)
    ckpt["ema"] = {k: (torch.randn(v.shape, generator=generator) * 0.2 if v.is_floating_point() else v)
                   for k, v in ckpt["ema"].items()}
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in ckpt.items() if k != "format"})
    export(tmp_path, tmp_path / "random.onnx")
    report = verify(tmp_path / "random.onnx", tmp_path)
    assert report.ok, report.failures
    assert min(e["output_rms"] for e in report.parity) > 0.1
    assert max(e["max_abs_diff"] for e in report.parity) <= TOLERANCE


def test_graph_is_one_file_with_dynamic_axes_and_runs_at_other_sizes(models: tuple[Path, Path, Path]) -> None:
    import onnxruntime as ort

    sr3 = models[0]
    proto = onnx.load(str(sr3))
    assert proto.opset_import[0].version in (17, 18)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["lr_up", "y_t", "noise_level"]
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", "", "H", "W"]
    session = ort.InferenceSession(str(sr3), providers=["CPUExecutionProvider"])
    for n, h, w in ((1, 10, 14), (3, 40, 24)):
        feeds = {"lr_up": np.zeros((n, 3, h, w), np.float32), "y_t": np.zeros((n, 3, h, w), np.float32),
                 "noise_level": np.full(n, 0.5, np.float32)}
        assert session.run(None, feeds)[0].shape == (n, 3, h, w)


def test_sr3_card_round_trips_through_the_onnx_file(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    card = export(models[2] / "runs" / "sr3", tmp_path / "m.onnx", name="Round trip")
    read = read_card(tmp_path / "m.onnx")
    assert read == card
    assert read.to_dict() == card.to_dict()
    assert (read.kind, read.scale, read.size_multiple) == ("sr3", 4, 2)
    assert (read.prediction, read.target, read.noise_conditioning) == ("epsilon", "hr", "sqrt_gamma")
    assert read.train_schedule == ScheduleSpec("linear", 2000, 1e-6, 1e-2)
    assert read.preset_names() == ["fast", "balanced", "quality"]
    quality = read.preset("quality")
    assert (quality.start, quality.strength, quality.steps, quality.sampler) == ("noise", 1.0, 100, "ddpm")
    assert read.training["steps"] == 4 and read.training["images_seen"] == 16
    assert read.training["command"].startswith("python -m exporter train")
    assert read.architecture["parameters"] > 0 and read.architecture["channel_mults"] == [1, 2]


def test_regression_card(models: tuple[Path, Path, Path]) -> None:
    card = read_card(models[1])
    assert (card.kind, card.prediction, card.train_schedule, card.inference_presets) == ("regression", "x0", None, {})
    assert (card.inputs, card.outputs) == (("lr_up",), ("y",))


def test_resume_continues_step_optimiser_ema_and_loss_log(photos: Path, tmp_path: Path) -> None:
    run = train_tiny(photos, tmp_path / "run", "--kind", "regression", "--target", "residual", steps=2)
    first = load_checkpoint(run)
    assert first["step"] == 2
    assert main(["train", "--preset", "tiny", "--data", str(photos), "--out", str(run), "--resume",
                 "--steps", "5", "--threads", "1"]) == 0
    resumed = load_checkpoint(run)
    assert resumed["step"] == 5
    assert [row[0] for row in resumed["loss_log"]] == [1, 2, 3, 4, 5]
    assert resumed["loss_log"][:2] == first["loss_log"]
    adam_steps = {float(s["step"]) for s in resumed["optimizer"]["state"].values()}
    assert adam_steps == {5.0}
    assert resumed["images_seen"] == 5 * 4
    assert not torch.equal(resumed["ema"]["out_conv.weight"], first["ema"]["out_conv.weight"])
    assert [r["step"] for r in _log(run) if "loss" in r] == [1, 2, 3, 4, 5]


def test_resume_refuses_changing_the_architecture(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = train_tiny(photos, tmp_path / "run", steps=1)
    argv = ["train", "--preset", "tiny", "--data", str(photos), "--out", str(run), "--threads", "1"]
    assert main([*argv, "--resume", "--base-channels", "32"]) == 1
    assert "cannot change unet when resuming" in capsys.readouterr().err
    assert main(argv) == 1  # without --resume an existing run is not overwritten
    assert "pass --resume" in capsys.readouterr().err


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_pickled_object_checkpoint_is_refused_and_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "code-ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "sr3-exporter-checkpoint-1", "step": 1, "config": {}, "model": {}, "ema": {},
                "payload": _WritesMarker(marker)}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(evil)
    assert main(["export", str(evil), "-o", str(tmp_path / "evil.onnx")]) == 1
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "evil.onnx").exists()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    good = {"step": 7, "config": {}, "model": {"w": torch.ones(3)}, "ema": {}}
    save_checkpoint(path, good)
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled: the write fails midway
        save_checkpoint(path, {**good, "step": 8, "model": {"w": torch.zeros(3)}, "bad": lambda: 0})
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_sigterm_writes_a_checkpoint_and_stops(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "exporter", "train", "--preset", "tiny", "--data", str(photos), "--out", str(run),
           "--threads", "1", "--steps", "100000", "--checkpoint-every", "100000", "--val-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            (run / "log.jsonl").exists() and len((run / "log.jsonl").read_text().splitlines()) >= 3
        ):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    ckpt = load_checkpoint(run)
    assert ckpt["step"] >= 3
    assert "interrupted: checkpoint at step" in err


def test_fp16_export_keeps_float_io_and_verifies(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run = models[2] / "runs" / "sr3"
    assert main(["export", str(run), "-o", str(tmp_path / "half.onnx"), "--fp16"]) == 0
    proto = onnx.load(str(tmp_path / "half.onnx"))
    assert {i.type.tensor_type.elem_type for i in proto.graph.input} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    noise_mlp = [t for t in proto.graph.initializer if t.name.startswith("model.noise_mlp")]
    assert noise_mlp and all(t.data_type == onnx.TensorProto.FLOAT for t in noise_mlp)
    assert read_card(tmp_path / "half.onnx").architecture["precision"] == "fp16"
    assert verify(tmp_path / "half.onnx", run).ok


def test_verify_and_inspect_commands_print_figures(models: tuple[Path, Path, Path],
                                                   capsys: pytest.CaptureFixture) -> None:
    sr3, _, work = models
    assert main(["verify", str(sr3), "--ckpt", str(work / "runs" / "sr3")]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and "verify: passed" in out
    assert main(["inspect", str(sr3)]) == 0
    out = capsys.readouterr().out
    assert "Tiny SR3 (test)" in out and "quality" in out and "sqrt_gamma" in out


def test_verify_fails_when_card_disagrees_with_graph(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    proto = onnx.load(str(models[1]))  # its card still says the output is "y"
    proto.graph.output[0].name = "z"
    proto.graph.node[-1].output[0] = "z"
    onnx.save(proto, str(tmp_path / "renamed.onnx"))
    report = verify(tmp_path / "renamed.onnx")
    assert not report.ok and "graph has" in report.failures[0]


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m exporter " + command)
    if command == "train":
        for flag in ("--data", "--out", "--resume", "--prediction", "--target", "--loss-weighting", "--device",
                     "--base-channels", "--channel-mults", "--config", "--threads", "--precision"):
            assert flag in text


def test_training_under_torchrun_with_two_processes(photos: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo): both ranks train, rank 0 alone writes the checkpoint and log."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "exporter", "train", "--preset", "tiny", "--data", str(photos), "--out", str(run),
           "--steps", "2", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = load_checkpoint(run)
    assert (ckpt["step"], ckpt["world_size"], ckpt["images_seen"]) == (2, 2, 2 * 2 * 4)
    assert [r["step"] for r in _log(run) if "loss" in r] == [1, 2]


def test_photo_folder_fixture_is_self_contained(tmp_path: Path) -> None:
    folder = make_photo_folder(tmp_path / "p", count=2)
    assert sorted(p.name for p in folder.iterdir()) == ["astronaut.png", "chelsea.png"]
