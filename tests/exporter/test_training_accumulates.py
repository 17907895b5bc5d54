"""Training state lives in git: `train --init-from MODEL.onnx` continues an exported model (issue 13)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_factory import make_photo_folder, train_tiny

from exporter.__main__ import main
from exporter.export.export_onnx import export
from exporter.training.checkpoint import load_checkpoint, save_checkpoint
from exporter.training.onnx_weights import load_unet
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import read_card


def randomised_export(run_dir: Path, out: Path, name: str, seed: int) -> Path:
    """Export ``run_dir`` with every EMA weight random, so a mix-up of any two tensors is visible."""
    ckpt = load_checkpoint(run_dir)
    generator = torch.Generator().manual_seed(seed)
    ckpt["ema"] = {k: (torch.randn(v.shape, generator=generator) * 0.2 if v.is_floating_point() else v)
                   for k, v in ckpt["ema"].items()}
    scratch = out.parent / f"{out.stem}-ckpt"
    save_checkpoint(scratch / "checkpoint.pt", {k: v for k, v in ckpt.items() if k != "format"})
    export(scratch, out, name=name)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("accumulate")
    photos = make_photo_folder(root / "photos")
    for kind in ("sr3", "regression"):
        run = train_tiny(photos, root / "runs" / kind, "--kind", kind, "--target", "residual", steps=2)
        randomised_export(run, root / f"source-{kind}.onnx", f"Source {kind}", seed=3 if kind == "sr3" else 4)
    return root


@pytest.mark.parametrize("kind", ["sr3", "regression"])
def test_load_unet_gives_back_the_exported_weights_exactly(work: Path, kind: str) -> None:
    model, card = load_unet(work / f"source-{kind}.onnx")
    exported = load_checkpoint(work / f"source-{kind}-ckpt")["ema"]
    state = model.state_dict()
    assert card.kind == kind and set(state) == set(exported)
    for name, tensor in exported.items():  # the GroupNorm scale and shift included, each in its place
        assert torch.equal(state[name], tensor), name
    assert not model.training


@pytest.mark.parametrize("kind", ["sr3", "regression"])
def test_the_loaded_unet_computes_what_onnxruntime_computes(work: Path, kind: str) -> None:
    path = work / f"source-{kind}.onnx"
    model, _ = load_unet(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    lr_up = rng.uniform(-1, 1, (2, 3, 24, 40)).astype(np.float32)
    feeds = {"lr_up": lr_up}
    if kind == "sr3":
        feeds |= {"y_t": rng.standard_normal(lr_up.shape).astype(np.float32),
                  "noise_level": np.array([0.3, 0.9], np.float32)}
    expected = session.run(None, feeds)[0]
    with torch.no_grad():
        got = model(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    assert np.sqrt(np.mean(expected**2)) > 0.1  # random weights: a real signal, not a near-zero output
    assert np.abs(got - expected).max() <= 1e-5


def test_load_unet_reads_a_model_whose_equal_weights_the_exporter_shared(work: Path, tmp_path: Path) -> None:
    """Untrained GroupNorms are all ones and zeros; the ONNX exporter stores such equal constants once
    and reaches the copies through Identity nodes. A fresh (or briefly trained) model must still load."""
    run = train_tiny(work / "photos", tmp_path / "fresh", "--kind", "regression", "--lr", "1e-12", steps=1)
    export(run, tmp_path / "fresh.onnx")
    assert any(node.op_type == "Identity" for node in onnx.load(str(tmp_path / "fresh.onnx")).graph.node)
    model, _ = load_unet(tmp_path / "fresh.onnx")
    for name, tensor in load_checkpoint(run)["ema"].items():
        assert torch.equal(model.state_dict()[name], tensor), name


def _train_from(work: Path, source: Path, out: Path, *extra: str) -> Path:
    code = main(["train", "--preset", "tiny", "--data", str(work / "photos"), "--out", str(out), "--threads", "1",
                 "--init-from", str(source), "--target", "residual", "--steps", "2", "--warmup-steps", "1", *extra])
    assert code == 0
    return out


def test_init_from_starts_from_the_models_weights(work: Path, tmp_path: Path) -> None:
    """With a negligible learning rate the continued model is the source model: it really started there."""
    source = work / "source-sr3.onnx"
    run = _train_from(work, source, tmp_path / "run", "--lr", "1e-12")
    continued = tmp_path / "continued.onnx"
    export(run, continued)
    before, _ = load_unet(source)
    after, card = load_unet(continued)
    fresh = load_checkpoint(work / "runs" / "sr3")["model"]  # what a run from scratch starts near
    for name, tensor in before.state_dict().items():
        torch.testing.assert_close(after.state_dict()[name], tensor, rtol=0, atol=1e-7)
    assert max(float((before.state_dict()[n] - fresh[n]).abs().max()) for n in fresh) > 0.1
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 2
    for name, tensor in before.state_dict().items():  # the trained weights too, not only their EMA
        torch.testing.assert_close(ckpt["model"][name], tensor, rtol=0, atol=1e-7)
    # The card records where it came from: the source's own training, and the steps in all.
    (entry,) = card.training["lineage"]
    source_card = read_card(source)
    assert (entry["model"], entry["file"]) == ("Source sr3", "source-sr3.onnx")
    assert entry["steps"] == source_card.training["steps"] == 2
    assert card.training["steps"] == 2 and card.training["total_steps"] == 4
    assert card.training["total_wall_seconds"] == pytest.approx(
        card.training["wall_seconds"] + source_card.training["wall_seconds"], abs=0.11)
    assert card.architecture["base_channels"] == source_card.architecture["base_channels"]


def test_lineage_accumulates_over_rounds(work: Path, tmp_path: Path) -> None:
    first = tmp_path / "round1.onnx"
    export(_train_from(work, work / "source-regression.onnx", tmp_path / "r1", "--kind", "regression"), first,
           name="Round 1")
    second = tmp_path / "round2.onnx"
    export(_train_from(work, first, tmp_path / "r2", "--kind", "regression"), second, name="Round 2")
    training = read_card(second).training
    assert [e["model"] for e in training["lineage"]] == ["Source regression", "Round 1"]
    assert [e["steps"] for e in training["lineage"]] == [2, 2]
    assert training["total_steps"] == 6
    # the details pane names the whole lineage's steps (mutation: the last run's steps alone, "trained 2 steps")
    assert "trained 6 steps in all (2 in its last run)" in read_card(second).description
    assert "trained 2 steps on" in read_card(work / "source-regression.onnx").description  # a fresh run
    ckpt = load_checkpoint(tmp_path / "r2")
    assert [e["model"] for e in ckpt["lineage"]] == ["Source regression", "Round 1"]


def test_init_from_a_model_of_the_other_kind_is_refused(work: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--preset", "tiny", "--data", str(work / "photos"), "--out", str(tmp_path / "run"),
                 "--kind", "regression", "--init-from", str(work / "source-sr3.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and "source-sr3.onnx" in err and "sr3 model" in err
    assert not (tmp_path / "run").exists()


def _no_card_onnx(path: Path) -> Path:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["lr_up"], ["y"])], "plain",
        [onnx.helper.make_tensor_value_info("lr_up", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def _foreign_card_onnx(work: Path, path: Path) -> Path:
    """A model with a valid card whose architecture names no U-Net (as an imported third-party model)."""
    proto = onnx.load(str(work / "source-regression.onnx"))
    card = read_card(work / "source-regression.onnx").with_updates(architecture={"parameters": 10})
    from sr3_desktop.core.model_files.card import embed_card

    embed_card(proto, card)
    onnx.save(proto, str(path))
    return path


def test_files_not_from_this_exporter_are_refused_naming_the_file(work: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    cases = {
        _no_card_onnx(tmp_path / "plain.onnx"): "no 'sr3.model_card' metadata",
        _foreign_card_onnx(work, tmp_path / "foreign.onnx"): "architecture lacks base_channels",
        garbage: "not a readable ONNX model",
        tmp_path / "missing.onnx": "not found",
    }
    for path, message in cases.items():
        with pytest.raises(ModelError, match=message) as raised:
            load_unet(path)
        assert path.name in str(raised.value)
        code = main(["train", "--preset", "tiny", "--data", str(work / "photos"), "--out", str(tmp_path / "run"),
                     "--kind", "regression", "--init-from", str(path)])
        err = capsys.readouterr().err
        assert code == 1 and path.name in err and message in err
    assert not (tmp_path / "run").exists()


def test_an_fp16_export_is_refused_with_the_reason(work: Path, tmp_path: Path) -> None:
    half = tmp_path / "half.onnx"
    export(work / "source-regression-ckpt", half, fp16=True)
    with pytest.raises(ModelError, match=r"half\.onnx is an --fp16 export"):
        load_unet(half)


def test_max_minutes_stops_with_a_checkpoint(work: Path, tmp_path: Path) -> None:
    run = tmp_path / "timed"
    code = main(["train", "--preset", "tiny", "--data", str(work / "photos"), "--out", str(run), "--threads", "1",
                 "--kind", "regression", "--steps", "100000", "--max-minutes", "0.02", "--val-every", "100000",
                 "--checkpoint-every", "100000", "--lr-schedule", "cosine"])
    assert code == 0
    ckpt = load_checkpoint(run)
    assert 1 <= ckpt["step"] < 100000
    assert ckpt["wall_seconds"] >= 0.02 * 60
