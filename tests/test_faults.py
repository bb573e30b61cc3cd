"""Camera faults: schedules, faulty images, the predictor stepping without a frame (memory
or a held output), ONNX with the flag, training augmentation, closed loop and evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from steertime.data.faults import (
    BLANKING,
    CODES,
    FaultyCamera,
    apply_offline,
    event_starts,
    fault_schedule,
    is_blank,
    parse_faults,
)
from steertime.errors import SteertimeError
from steertime.models import OutputLayout
from steertime.models.checkpoint import save_untrained_run
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from tests.conftest import LAYOUT, SPEC, batched_with_gaps


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(40, 200, (160, 320, 3), dtype=np.uint8) for _ in range(n)]


def _flag_run(tmp_path, name: str = "cnn_lstm", layout: OutputLayout = LAYOUT):
    return save_untrained_run(
        tmp_path / f"run_{name}_flag", name, layout, SPEC.to_dict(), (160, 320), missing_input=True
    )


def test_parse_faults_and_one_line_errors():
    specs = parse_faults("blackout:0.5@10, drop:0.3@20")
    assert [(s.kind, s.length_s, s.every_s) for s in specs] == [
        ("blackout", 0.5, 10.0),
        ("drop", 0.3, 20.0),
    ]
    assert parse_faults("") == [] and str(specs[0]) == "blackout:0.5@10"
    for bad, msg in [
        ("smoke:1@10", "kind must be one of"),
        ("blackout:0.5", "KIND:LENGTH_S@EVERY_S"),
        ("glare:12@10", "0 < length"),
    ]:
        with pytest.raises(SteertimeError, match=msg) as e:
            parse_faults(bad)
        assert bad in str(e.value) and "\n" not in str(e.value)


def test_schedule_rate_length_and_determinism():
    specs = parse_faults("blackout:0.5@10")
    codes = fault_schedule(36_000, 10.0, specs, np.random.default_rng(1))
    starts = np.flatnonzero(np.diff(np.r_[0, codes]) > 0)
    assert 0.04 < np.mean(codes != 0) < 0.06  # 5 frames in every ~100
    assert 330 < len(starts) < 390  # one an hour's 360 onsets, give or take
    assert set(np.unique(codes)) == {0, CODES["blackout"]}
    again = fault_schedule(36_000, 10.0, specs, np.random.default_rng(1))
    assert (codes == again).all()
    assert not (codes == fault_schedule(36_000, 10.0, specs, np.random.default_rng(2))).all()
    # runs of equal codes share their first index
    assert list(event_starts(np.array([0, 3, 3, 0, 5, 5, 5]))) == [0, 1, 1, 3, 4, 4, 4]


def test_faulty_camera_delivers_each_kind():
    frames = _frames(8)
    codes = np.array([0, 1, 2, 3, 4, 5, 5, 0], np.int8)
    cam = FaultyCamera(codes, seed=3)
    got = [cam(i, f) for i, f in enumerate(frames)]
    assert got[0][0] is frames[0] and got[1][0] is None  # clean, dropped
    assert np.array_equal(got[2][0], got[0][0])  # frozen: the last delivered frame again
    assert is_blank(got[3][0]) and is_blank(got[4][0])  # blackout, glare
    assert got[3][0].mean() < 16 < 239 < got[4][0].mean()
    assert not is_blank(got[5][0]) and not is_blank(frames[0])
    # a blob covers the same pixels for the whole event, and not the whole frame
    cover5 = np.any(got[5][0] != frames[5], axis=2)
    cover6 = np.any(got[6][0] != frames[6], axis=2)
    assert 0.01 < cover5.mean() < 0.9 and np.mean(cover5 == cover6) > 0.98
    assert [c for _, c in got] == codes.tolist()


def test_apply_offline_zeroes_blanking_frames_and_sets_missing():
    frames = np.stack(_frames(6))
    codes = np.array([0, 3, 1, 5, 5, 0], np.int8)
    out, missing = apply_offline(frames.copy(), codes, event_starts(codes), seed=0)
    assert missing.tolist() == [c in BLANKING for c in codes]
    assert (out[1] == 0).all() and (out[2] == 0).all()
    assert np.array_equal(out[0], frames[0]) and not np.array_equal(out[3], frames[3])


def test_flag_model_rolls_on_memory_and_matches_batched(tmp_path):
    frames = _frames(8)
    p = Predictor.from_run(_flag_run(tmp_path))
    assert p.missing_input and p.fault_gate  # the gate is on for a model with the flag
    outs = []
    for i, f in enumerate(frames):
        outs.append(p.step(None if i in (3, 4) else f, 0.1 * i))
    assert [o["status"] for o in outs[2:6]] == ["ok", "missing", "missing", "ok"]
    assert outs[3]["fault"] == "dropped" and outs[3]["steering"] != outs[4]["steering"]
    # the same as the whole sequence at once with the flags
    batched = batched_with_gaps(p, frames, slice(3, 5))[:, 0]
    assert np.allclose([o["steering"] for o in outs], batched, atol=1e-5)
    # the gate: a black frame and an exact repeat count as missing
    black = np.zeros_like(frames[0])
    assert p.step(black, 1.0)["fault"] == "blank"
    p.step(frames[0], 1.1)
    assert p.step(frames[0].copy(), 1.2)["fault"] == "frozen"


def test_single_frame_model_holds_its_last_output(tmp_path):
    from tests.conftest import make_run

    p = Predictor.from_run(make_run(tmp_path, "pilotnet"))
    assert not p.missing_input and not p.fault_gate
    first = p.step(None, 0.0)  # nothing to hold yet: the training mean
    assert first["status"] == "held" and first["steering"] == pytest.approx(LAYOUT.mean[0])
    a = p.step(_frames(1)[0], 0.1)
    b = p.step(None, 0.2)
    assert b["status"] == "held" and b["steering"] == a["steering"] and b["speed"] == a["speed"]
    assert p.step(np.zeros((160, 320, 3), np.uint8), 0.3)["status"] == "ok"  # gate off


def test_onnx_export_carries_the_flag(tmp_path):
    import json

    run = _flag_run(tmp_path, "cnn_gru")
    folder = export_onnx(run, tmp_path / "onnx")
    side = json.loads((folder / "model.json").read_text())
    assert side["inputs"][:2] == ["frame", "missing"] and side["missing_input"] is True
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(folder)
    for i, f in enumerate(_frames(6)):
        f = None if i in (2, 3) else f
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        assert a["status"] == b["status"] and abs(a["steering"] - b["steering"]) < 1e-4


def test_training_augmentation_flags_and_trains(tiny_cache, tmp_path):
    from steertime.data import Cache
    from steertime.train import train
    from steertime.train.batches import BatchReader, Chunk
    from tests.conftest import small_train_config

    cache = Cache.open(tiny_cache)
    specs = tuple(parse_faults("blackout:0.3@1,blob:0.5@2"))
    with_flag = BatchReader(cache, ["steering"], 40, 1, faults=specs, missing_input=True)
    frames, _, _ = with_flag.read([Chunk(0, 20, True, fault_seed=5)])
    miss = with_flag.missing[0].copy()
    assert miss.any() and (frames[0][miss] == 0).all() and frames[0][~miss].any()
    # the same chunk for a model without the flag: blobs only, nothing zeroed
    no_flag = BatchReader(cache, ["steering"], 40, 1, faults=specs, missing_input=False)
    frames2, _, _ = no_flag.read([Chunk(0, 20, True, fault_seed=5)])
    assert not no_flag.missing.any() and not (frames2[0].reshape(40, -1) == 0).all(1).any()
    cfg = small_train_config(
        tiny_cache, tmp_path / "run", "model.missing_input=true", "data.faults=blackout:0.3@1"
    )
    train(cfg, progress=False)
    assert Predictor.from_run(tmp_path / "run").missing_input
    bad = small_train_config(tiny_cache, tmp_path / "bad", "data.faults=fog:1@2")
    with pytest.raises(SteertimeError, match="data.faults"):
        train(bad, progress=False)


class _Recorder:
    """A predictor stand-in: steers a constant 5°, predicts zero torque, records frames."""

    source_size = (160, 320)
    fault_gate = False

    def __init__(self) -> None:
        self.frames: list = []

    def reset(self) -> None:
        pass

    def step(self, frame, t):
        self.frames.append(frame)
        return {"steering": 5.0, "torque": 0.0}


def test_closed_loop_faults_are_paired_and_reported():
    from steertime.sim import drive, heldout_seeds

    specs = parse_faults("drop:0.5@3,blackout:0.5@3")
    a, b = _Recorder(), _Recorder()
    ra = drive(a, heldout_seeds(0, 1), 12.0, faults=specs)
    drive(b, heldout_seeds(0, 1), 12.0, faults=specs)
    dropped = [f is None for f in a.frames]
    assert any(dropped) and dropped == [f is None for f in b.frames]  # same roads, same faults
    assert any(f is not None and is_blank(f) for f in a.frames)
    s = ra.summary()
    assert 0 < s["fault_minutes"] * 60 < 12 and s["fault_interventions"] <= s["interventions"]
    # a model that predicts torque is scored against the car's: zero is off by its RMS
    assert s["torque_rmse_nm"] is not None and s["torque_rmse_nm"] > 0
    assert not a.fault_gate  # the drive restores the predictor's gate


def test_evaluate_scores_fault_windows_apart(tiny_cache, tmp_path):
    from steertime.evaluate import evaluate

    layout = OutputLayout(["steering"], [0.0], [1.0], units=[{"name": "deg"}])
    pilot = save_untrained_run(tmp_path / "pilot", "pilotnet", layout, SPEC.to_dict())
    lstm = _flag_run(tmp_path, "cnn_lstm", layout)
    result, frames, _ = evaluate(lstm, tiny_cache, "test", [pilot], faults="blackout:0.5@2")
    assert 0 < result["fault_frames"] < result["frames"]
    for m in ("pilot", "run_cnn_lstm_flag", "predict_zero"):
        sc = result["outputs"]["steering"]["models"][m]
        assert np.isfinite(sc["rmse_fault"]) and np.isfinite(sc["rmse_clean"])
    # and each run is also scored on the fault frames when shown them
    plain, seen, _ = evaluate(lstm, tiny_cache, "test", [pilot])
    bad, true = frames.fault != 0, frames.truth["steering"]
    for m in ("pilot", "run_cnn_lstm_flag"):
        sc = result["outputs"]["steering"]["models"][m]
        shown = seen.preds[m]["steering"][bad]
        assert sc["rmse_fault_sighted"] == pytest.approx(np.sqrt(np.mean((shown - true[bad]) ** 2)))
    assert "rmse_fault_sighted" not in result["outputs"]["steering"]["models"]["predict_zero"]
    assert "rmse_fault_sighted" not in plain["outputs"]["steering"]["models"]["pilot"]
    # PilotNet holds its last output through every blackout
    p = frames.preds["pilot"]["steering"]
    inside = np.flatnonzero(frames.fault[1:] != 0) + 1
    assert np.allclose(p[inside], p[inside - 1])
    with pytest.raises(SteertimeError, match="kind must be one of"):
        evaluate(lstm, tiny_cache, "test", faults="smoke:1@2")


def test_evaluate_cli_prints_and_reports_the_sighted_column(tiny_cache, tmp_path):
    import json

    from typer.testing import CliRunner

    from steertime.cli import app

    layout = OutputLayout(["steering"], [0.0], [1.0], units=[{"name": "deg"}])
    pilot = save_untrained_run(tmp_path / "pilot", "pilotnet", layout, SPEC.to_dict())
    lstm = _flag_run(tmp_path, "cnn_lstm", layout)
    out = tmp_path / "eval"
    args = ["evaluate", str(lstm), "--data", str(tiny_cache), "--compare", str(pilot)]
    res = CliRunner().invoke(app, [*args, "--faults", "blackout:0.5@2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "shown" in res.output  # the sighted column (rich may wrap its header)
    models = json.loads((out / "metrics.json").read_text())["outputs"]["steering"]["models"]
    assert np.isfinite(models["pilot"]["rmse_fault_sighted"])
    assert "RMSE in faults if shown" in (out / "report.html").read_text()
