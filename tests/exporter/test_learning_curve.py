"""The learning curve: TensorBoard event files, `exporter plot`, and best.pt kept at the best validation."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from model_factory import make_photo_folder, train_tiny
from PIL import Image

from exporter.__main__ import main
from exporter.config import ConfigError, get_preset
from exporter.training.checkpoint import load_checkpoint
from exporter.training.learning_curve import plot, read_log
from exporter.training.tensorboard_events import TensorBoardWriter, crc32c, masked_crc
from exporter.training.train import Trainer


def event_classes() -> tuple[type, type]:
    """TensorBoard's Event and Summary messages, built here from their field numbers with the protobuf
    runtime (an independent decoder for what exporter/tensorboard.py encodes by hand)."""
    proto = descriptor_pb2.FileDescriptorProto(name="sr3_test_event.proto", package="sr3test", syntax="proto3")
    label, types = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto
    image = proto.message_type.add(name="Image")
    for name, number, kind in (("height", 1, types.TYPE_INT32), ("width", 2, types.TYPE_INT32),
                               ("colorspace", 3, types.TYPE_INT32), ("encoded_image_string", 4, types.TYPE_BYTES)):
        image.field.add(name=name, number=number, type=kind, label=label.LABEL_OPTIONAL)
    value = proto.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=types.TYPE_STRING, label=label.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=types.TYPE_FLOAT, label=label.LABEL_OPTIONAL)
    value.field.add(name="image", number=4, type=types.TYPE_MESSAGE, type_name=".sr3test.Image",
                    label=label.LABEL_OPTIONAL)
    summary = proto.message_type.add(name="Summary")
    summary.field.add(name="value", number=1, type=types.TYPE_MESSAGE, type_name=".sr3test.Value",
                      label=label.LABEL_REPEATED)
    event = proto.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=types.TYPE_DOUBLE, label=label.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=types.TYPE_INT64, label=label.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=types.TYPE_STRING, label=label.LABEL_OPTIONAL)
    event.field.add(name="summary", number=5, type=types.TYPE_MESSAGE, type_name=".sr3test.Summary",
                    label=label.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("sr3test.Event")), get(pool.FindMessageTypeByName("sr3test.Summary"))


def records(path: Path) -> list[bytes]:
    """The TFRecord payloads of ``path``, each length and payload CRC checked."""
    data, out, offset = path.read_bytes(), [], 0
    while offset < len(data):
        length_bytes = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        assert struct.unpack("<I", data[offset + 8 : offset + 12])[0] == masked_crc(length_bytes)
        payload = data[offset + 12 : offset + 12 + length]
        assert struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])[0] == masked_crc(payload)
        out.append(payload)
        offset += 16 + length
    return out


def test_crc32c_is_the_castagnoli_checksum() -> None:
    """The standard check value of CRC-32C; mutation caught: the IEEE polynomial (0xEDB88320) or no final xor."""
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_event_files_decode_as_tensorboard_events(tmp_path: Path) -> None:
    """Mutations caught: a wrong field number or wire type (the protobuf decoder reads other values), a bad
    CRC (records() fails), steps or tags swapped."""
    event_cls, _ = event_classes()
    png = tmp_path / "grid.png"
    Image.new("RGB", (12, 7), (200, 10, 10)).save(png)
    writer = TensorBoardWriter(tmp_path / "tb")
    writer.scalars(300, {"train/loss": 0.125, "validation/psnr_model": 31.5})
    writer.image(1000, "validation/samples", png)
    events = [event_cls.FromString(r) for r in records(writer.path)]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 300 and [(v.tag, v.simple_value) for v in events[1].summary.value] == [
        ("train/loss", 0.125), ("validation/psnr_model", 31.5)]
    image = events[2].summary.value[0]
    assert events[2].step == 1000 and image.tag == "validation/samples"
    assert (image.image.height, image.image.width, image.image.colorspace) == (7, 12, 3)
    assert image.image.encoded_image_string == png.read_bytes()
    assert all(e.wall_time > 1.6e9 for e in events)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("curve")
    photos = make_photo_folder(work / "photos")
    return train_tiny(photos, work / "run", "--kind", "regression", "--val-every", "1", "--keep-best", "psnr_model",
                      "--tensorboard", str(work / "tb"), steps=4)


def test_a_run_logs_to_tensorboard_and_keeps_its_best_validation(tiny_run: Path) -> None:
    """Mutation caught: best.pt written at the wrong step (not the arg-max of the logged PSNR), or the
    TensorBoard writer not called by the trainer."""
    _, series = read_log(tiny_run)
    psnrs = series["psnr_model"]
    assert len(psnrs) >= 4 and {"grain", "spectral_gap", "gmsd", "objective"} <= set(series)
    best_step = max(psnrs, key=lambda p: p[1])[0]
    assert load_checkpoint(tiny_run / "best.pt")["step"] == best_step
    event_cls, _ = event_classes()
    (events_file,) = (tiny_run.parent / "tb").glob("events.out.tfevents.*")
    tags = {v.tag for r in records(events_file)[1:] for v in event_cls.FromString(r).summary.value}
    assert {"train/loss", "validation/psnr_model", "validation/samples"} <= tags


def test_is_best_keeps_the_maximum_or_the_minimum_and_names_a_missing_metric() -> None:
    """Mutations caught: '-' ignored (a loss kept at its worst), ties counted as better, a typo silent."""
    state = SimpleNamespace(config=get_preset("tiny").__class__(keep_best="-objective"), best_value=None)
    assert [Trainer.is_best(state, {"objective": v}) for v in (0.5, 0.6, 0.4, 0.4)] == [True, False, True, False]
    state = SimpleNamespace(config=get_preset("tiny").__class__(keep_best="psnr_model"), best_value=None)
    assert [Trainer.is_best(state, {"psnr_model": v}) for v in (30.0, 29.0, 31.0)] == [True, False, True]
    with pytest.raises(ConfigError, match="no validation metric 'psnr'"):
        Trainer.is_best(SimpleNamespace(config=state.config.__class__(keep_best="psnr"), best_value=None),
                        {"psnr_model": 1.0})


def test_plot_draws_the_loss_and_every_logged_metric(tiny_run: Path, tmp_path: Path) -> None:
    """Mutation caught: a metric panel dropped, or the PNG not written; the CLI prints the panels."""
    titles = plot(tiny_run, tmp_path / "curve.png")
    assert titles[0] == "training loss" and {"PSNR (dB)", "grain (1 = the photo's)", "spectral gap"} <= set(titles)
    with Image.open(tmp_path / "curve.png") as image:
        assert image.size[1] >= 3 * 260
    assert main(["plot", str(tiny_run), "-o", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").is_file()
    assert "critic loss (1.386: cannot tell)" not in titles  # a run without a critic has no such panel
    (tmp_path / "critic").mkdir()
    rows = [{"step": s, "loss": 0.2, "critic_loss": 1.3 - 0.01 * s} for s in (50, 100, 150)]
    (tmp_path / "critic" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot(tmp_path / "critic", tmp_path / "critic.png") == ["training loss", "critic loss (1.386: cannot tell)"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text(json.dumps({"step": 1, "time": 0}) + "\n")
    with pytest.raises(SystemExit, match="no training or validation rows"):
        plot(tmp_path / "empty", tmp_path / "none.png")
