"""The cache of onnxruntime's optimised graphs (core/model_files/session_cache.py): a model's second CPU
session loads the graph the first one saved, computes exactly what a fresh session computes, and never
reads a graph of a changed model, a damaged file or one it cannot write."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx_fixtures import local_sr3, regression, save, sharpen_numpy

from sr3_desktop.core.model_files import session_cache
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser


@pytest.fixture
def bundled(empty_model_folders: tuple[Path, Path]) -> Path:
    """A fresh bundled-models folder, and a fresh data folder (so a fresh cache), per test."""
    return empty_model_folders[0]


LR_UP = np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)


class SessionSpy:
    """Wraps onnxruntime's InferenceSession to record which file each session was built from and at
    which optimisation level; the sessions themselves are onnxruntime's own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loads: list[tuple[str, ort.GraphOptimizationLevel]] = []
        real = ort.InferenceSession

        def build(path: str, sess_options: ort.SessionOptions, **kwargs: Any) -> ort.InferenceSession:
            self.loads.append((path, sess_options.graph_optimization_level))
            return real(path, sess_options=sess_options, **kwargs)

        monkeypatch.setattr(ort, "InferenceSession", build)


def cached_files() -> list[Path]:
    folder = session_cache.cache_dir()
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_second_session_loads_the_saved_graph_with_the_optimiser_off_and_computes_the_same(
        bundled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = save(local_sr3(layers=2, seed=3), bundled / "model.onnx")
    spy = SessionSpy(monkeypatch)
    first = OnnxDenoiser(model, "cpu")
    (saved,) = cached_files()
    assert saved.name.startswith("model-") and spy.loads == [(str(model), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]
    second = OnnxDenoiser(model, "cpu")
    assert spy.loads[1] == (str(saved), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert second.card == first.card  # the card survives in the optimised graph's metadata
    y_t = np.random.default_rng(1).standard_normal(LR_UP.shape).astype(np.float32)
    level = np.array([0.7], dtype=np.float32)
    np.testing.assert_array_equal(second.predict(LR_UP, y_t, level), first.predict(LR_UP, y_t, level))


def test_a_changed_model_never_reads_the_old_graph_and_replaces_it(bundled: Path) -> None:
    """Mutation caught: a key without the file's size and times serves the first model's graph."""
    model = save(regression(amount=0.5), bundled / "reg.onnx")
    OnnxDenoiser(model, "cpu")
    (old,) = cached_files()
    save(regression(amount=2.0), model)
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    out = OnnxDenoiser(model, "cpu").predict_image(LR_UP)
    np.testing.assert_allclose(out[0], sharpen_numpy(LR_UP[0], 2.0), atol=1e-5)
    (new,) = cached_files()  # the old model's graph is gone, not left to pile up
    assert new != old


def test_a_graph_unused_for_a_month_is_dropped_when_another_is_saved(bundled: Path) -> None:
    """Each load marks its graph used; saving a graph drops those unused for STALE_DAYS (a deleted model's
    graph, 24 MB for the bundled regression model, would otherwise stay for ever). Mutations caught: no
    pruning, pruning by age without the mark on load (the graph used yesterday goes), a wrong unit of age."""
    used, unused = save(regression(amount=0.5), bundled / "a.onnx"), save(regression(amount=1.0), bundled / "b.onnx")
    OnnxDenoiser(used, "cpu")
    OnnxDenoiser(unused, "cpu")
    month_ago = time.time() - (session_cache.STALE_DAYS + 1) * 86400.0
    for graph in cached_files():
        os.utime(graph, (month_ago, month_ago))
    OnnxDenoiser(used, "cpu")  # a load: its graph is used again
    unused.unlink()
    before = {p.name.split("-")[0]: p for p in cached_files()}
    assert set(before) == {"a", "b"} and time.time() - before["a"].stat().st_mtime < 60
    OnnxDenoiser(save(regression(amount=2.0), bundled / "c.onnx"), "cpu")  # a graph saved: the prune runs
    assert sorted(p.name.split("-")[0] for p in cached_files()) == ["a", "c"]
    young = time.time() - (session_cache.STALE_DAYS - 1) * 86400.0
    os.utime(before["a"], (young, young))
    OnnxDenoiser(save(regression(amount=3.0), bundled / "d.onnx"), "cpu")
    assert sorted(p.name.split("-")[0] for p in cached_files()) == ["a", "c", "d"]


def test_two_model_files_of_the_same_name_keep_their_own_graphs(bundled: Path) -> None:
    one = save(regression(amount=0.5), bundled / "a" / "reg.onnx")
    two = save(regression(amount=2.0), bundled / "b" / "reg.onnx")
    OnnxDenoiser(one, "cpu")
    OnnxDenoiser(two, "cpu")
    assert len(cached_files()) == 2
    np.testing.assert_allclose(OnnxDenoiser(one, "cpu").predict_image(LR_UP)[0], sharpen_numpy(LR_UP[0], 0.5),
                               atol=1e-5)


def test_a_damaged_cache_file_is_rebuilt_from_the_model(bundled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = save(regression(amount=1.5), bundled / "reg.onnx")
    OnnxDenoiser(model, "cpu")
    (saved,) = cached_files()
    saved.write_bytes(b"not an onnx graph")
    out = OnnxDenoiser(model, "cpu").predict_image(LR_UP)
    np.testing.assert_allclose(out[0], sharpen_numpy(LR_UP[0], 1.5), atol=1e-5)
    (rebuilt,) = cached_files()
    assert rebuilt == saved and rebuilt.read_bytes() != b"not an onnx graph"
    spy = SessionSpy(monkeypatch)
    OnnxDenoiser(model, "cpu")
    assert spy.loads == [(str(saved), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]


def test_a_cache_folder_that_cannot_be_written_costs_only_the_saving(bundled: Path, tmp_path: Path) -> None:
    session_cache.cache_dir().parent.mkdir(parents=True, exist_ok=True)
    session_cache.cache_dir().write_text("a file where the folder should be")
    model = save(regression(amount=1.5), bundled / "reg.onnx")
    out = OnnxDenoiser(model, "cpu").predict_image(LR_UP)
    np.testing.assert_allclose(out[0], sharpen_numpy(LR_UP[0], 1.5), atol=1e-5)
    assert not list(tmp_path.rglob("*.tmp")) and session_cache.cache_dir().is_file()


def test_a_file_outside_the_model_folders_leaves_nothing_in_the_cache(bundled: Path, tmp_path: Path) -> None:
    """A candidate on its import test run, or a file named on the command line, is not cached."""
    elsewhere = save(regression(amount=1.5), tmp_path / "elsewhere" / "reg.onnx")
    np.testing.assert_allclose(OnnxDenoiser(elsewhere, "cpu").predict_image(LR_UP)[0], sharpen_numpy(LR_UP[0], 1.5),
                               atol=1e-5)
    assert cached_files() == [] and not session_cache.enabled(elsewhere, ["CPUExecutionProvider"])


def test_the_cache_is_for_cpu_sessions_and_can_be_turned_off(bundled: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    model = save(regression(), bundled / "reg.onnx")
    assert session_cache.enabled(model, ["CPUExecutionProvider"])
    assert not session_cache.enabled(model, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setenv("SR3_ORT_CACHE", "0")
    assert not session_cache.enabled(model, ["CPUExecutionProvider"])
    OnnxDenoiser(model, "cpu")
    assert cached_files() == []
