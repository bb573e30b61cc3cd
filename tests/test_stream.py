"""Streaming predictor and ONNX export: exactness for every model, parity, messy streams."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import FrameSpec, read_drives
from steertime.models import list_models
from steertime.models.checkpoint import save_untrained_run
from steertime.stream import OnnxPredictor, Predictor, StreamError, export_onnx
from tests.conftest import LAYOUT, SPEC, make_run


@pytest.fixture(scope="module")
def real_frames(shared_data) -> list[np.ndarray]:
    (d,) = read_drives(shared_data / "udacity_sim_track1")
    sub = d.frames.subset(np.arange(1000, 1016))
    return [f for _, f in sub.iter_frames()]


@pytest.mark.parametrize("name", list_models())
def test_frame_by_frame_equals_batched(name, tmp_path, real_frames):
    run = make_run(tmp_path, name)
    p = Predictor.from_run(run)
    outs = [p.step(f, 0.1 * i) for i, f in enumerate(real_frames)]
    stepped = np.array([[o["steering"], o["speed"]] for o in outs])
    x = torch.from_numpy(np.stack([SPEC.apply(f) for f in real_frames]))[None]
    with torch.no_grad():
        y, _ = p.model(x)
    batched = p.layout.denormalize(y[0].numpy())
    assert np.allclose(stepped, batched, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list_models())
def test_onnx_parity_on_a_real_drive(name, tmp_path, real_frames):
    run = make_run(tmp_path, name)
    folder = export_onnx(run, tmp_path / "onnx")
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(folder)
    for i, f in enumerate(real_frames):
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        for k in ("steering", "speed", "steering_rad"):
            assert abs(a[k] - b[k]) < 1e-4, (i, k, a[k], b[k])
    assert (folder / "model.json").is_file()


def test_gap_resets_state(tmp_path, real_frames):
    p = Predictor.from_run(make_run(tmp_path, "cnn_lstm"))
    fresh = Predictor.from_run(make_run(tmp_path, "cnn_lstm"))
    for i in range(5):
        p.step(real_frames[i], 0.1 * i)
    out = p.step(real_frames[5], 10.0)
    assert out["status"] == "reset"
    assert out["steering"] == pytest.approx(fresh.step(real_frames[5], 0.0)["steering"], abs=1e-6)


def test_bad_timestamps_are_refused(tmp_path, real_frames):
    p = Predictor.from_run(make_run(tmp_path, "pilotnet"))
    p.step(real_frames[0], 1.0)
    with pytest.raises(StreamError, match="duplicated"):
        p.step(real_frames[1], 1.0)
    with pytest.raises(StreamError, match="earlier"):
        p.step(real_frames[1], 0.5)
    with pytest.raises(StreamError, match="not finite"):
        p.step(real_frames[1], float("nan"))


def test_frame_size_rescaled_or_refused(tmp_path, real_frames):
    p = Predictor.from_run(make_run(tmp_path, "pilotnet"))
    big = np.asarray(Image.fromarray(real_frames[0]).resize((640, 320)))
    out = p.step(big, 0.0)  # same aspect: crop rows scale with the frame
    assert out["status"] == "ok" and np.isfinite(out["steering"])
    with pytest.raises(StreamError, match="trained on 320x160"):
        p.step(np.zeros((180, 320, 3), np.uint8), 0.1)
    strict = Predictor.from_run(make_run(tmp_path, "pilotnet"), strict_size=True)
    with pytest.raises(StreamError, match="trained on 320x160"):
        strict.step(big, 0.0)


def test_undecodable_frame_is_skipped_and_state_kept(tmp_path, real_frames):
    a = Predictor.from_run(make_run(tmp_path, "cnn_gru"))
    b = Predictor.from_run(make_run(tmp_path, "cnn_gru"))
    buf = io.BytesIO()
    Image.fromarray(real_frames[0]).save(buf, format="JPEG")
    assert a.step(buf.getvalue(), 0.0)["status"] == "ok"
    b.step(buf.getvalue(), 0.0)
    bad = a.step(b"\xff\xd8 truncated jpeg", 0.1)
    assert bad["status"] == "skipped" and "undecodable" in bad["error"]
    assert a.step(real_frames[1], 0.2)["steering"] == pytest.approx(
        b.step(real_frames[1], 0.2)["steering"], abs=1e-6
    )


def test_predict_cli_on_deeptesla_and_bare_video(tmp_path, shared_data):
    run = make_run(tmp_path, "cnn_lstm", source_size=(180, 320), spec=FrameSpec(66, 200, 70, 20))
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            str(shared_data / "deeptesla" / "epoch01_steering.csv"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "p.csv")
    assert len(df) == 755 and {"t", "steering", "steering_rad", "true_steering", "status"} <= set(
        df.columns
    )
    assert (df["status"] == "ok").all()
    r = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "onnx")])
    assert r.exit_code == 0, r.output
    # Named epochNN_front.mkv beside its CSV the video is a DeepTesla epoch; under another
    # name it is a bare video without labels.
    (tmp_path / "front.mkv").symlink_to(shared_data / "deeptesla" / "epoch01_front.mkv")
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            str(tmp_path / "front.mkv"),
            "--onnx",
            str(tmp_path / "onnx"),
            "--out",
            str(tmp_path / "v.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    dv = pd.read_parquet(tmp_path / "v.parquet")
    assert len(dv) == 755 and "true_steering" not in dv.columns
    assert np.allclose(dv["steering"], df["steering"], atol=1e-4)


def test_relu_model_exports_and_matches(tmp_path, real_frames):
    import onnx

    run = save_untrained_run(
        tmp_path / "run", "cnn_lstm", LAYOUT, SPEC.to_dict(), (160, 320), act="relu"
    )
    folder = export_onnx(run, tmp_path / "onnx")
    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "Relu" in ops and "Elu" not in ops
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(folder)
    for i, f in enumerate(real_frames[:5]):
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        assert abs(a["steering"] - b["steering"]) < 1e-4


def test_one_inference_thread_by_default_and_restored(tmp_path, real_frames, monkeypatch):
    """Batch-1 steps default to one intra-op thread (docs/benchmarks.md, under load), set
    only around the step: a process that trains afterwards keeps its own setting."""
    from steertime.stream.threads import DEFAULT_THREADS

    assert DEFAULT_THREADS == 1
    seen: list[int] = []
    p = Predictor.from_run(make_run(tmp_path, "cnn_lstm"))
    assert p.threads == 1
    forward = p.model.forward
    monkeypatch.setattr(
        p.model, "forward", lambda *a: (seen.append(torch.get_num_threads()), forward(*a))[1]
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p.step(real_frames[0], 0.0)
        assert seen == [1] and torch.get_num_threads() == 2
        Predictor.from_run(make_run(tmp_path, "pilotnet"), threads=0).step(real_frames[0], 0.0)
    finally:
        torch.set_num_threads(before)
    folder = export_onnx(make_run(tmp_path, "pilotnet"), tmp_path / "onnx")
    opts = OnnxPredictor(folder).session.get_session_options()
    assert opts.intra_op_num_threads == 1


@pytest.mark.parametrize("command", ["predict", "evaluate", "compare", "render", "drive"])
def test_every_inference_command_takes_threads(command):
    r = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--threads" in r.output


def test_predict_logs_progress_lines_off_a_terminal(tmp_path, shared_data, monkeypatch):
    """Off a terminal (a log, CI) a long predict/render writes a plain line every
    LOG_EVERY_S instead of staying silent or flooding stderr with bar redraws."""
    import importlib

    # steertime.cli.app is also the name of the Typer object: fetch the module itself
    monkeypatch.setattr(importlib.import_module("steertime.cli.app"), "LOG_EVERY_S", 0.0)
    run = make_run(tmp_path, "pilotnet", source_size=(180, 320), spec=FrameSpec(66, 200, 70, 20))
    csv_ = str(shared_data / "deeptesla" / "epoch01_steering.csv")
    r = CliRunner().invoke(app, ["predict", run.as_posix(), csv_, "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("predict: ")]
    assert len(lines) > 100 and "/755 (" in lines[0] and "s left" in lines[0]
    assert "\r" not in r.output
