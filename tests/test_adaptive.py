"""Spreads recalibrated online (`stream.adaptive`): the update rule, its coverage
guarantee under drift, delayed outcomes, and its use in `evaluate` and the predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steertime.evaluate.metrics import interval_coverage
from steertime.evaluate.run import evaluate
from steertime.evaluate.verdict import verdicts
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.stream.adaptive import AdaptiveScale, adaptive_scales
from steertime.stream.predictor import StreamError
from tests.conftest import small_train_config


def test_a_miss_widens_and_a_hit_narrows_by_the_level_s_odds():
    a = AdaptiveScale(gamma=0.1, level=0.9)
    assert a.update(0.0, 1.0, 5.0) is True  # |err| 5 > 1.645
    assert a.scale == pytest.approx(math.exp(0.1 * 0.9))
    a.reset()
    assert a.update(0.0, 1.0, 1.0) is False
    assert a.scale == pytest.approx(math.exp(-0.1 * 0.1))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=300), st.floats(0.01, 0.3))
def test_misses_minus_their_share_are_the_log_scale_over_gamma(errors, gamma):
    # The identity behind the long-run guarantee (Gibbs & Candès 2021), whatever the data.
    n = len(errors)
    pred, sd = np.zeros(n), np.full(n, 0.5)
    truth = np.asarray(errors)
    k = adaptive_scales(pred, truth, sd, gamma=gamma)
    missed = np.abs(truth) > 1.6448536269514722 * sd * k
    a = AdaptiveScale(gamma)
    for e, s in zip(errors, sd * k, strict=True):
        a.update(0.0, s, e)
    assert np.sum(missed - 0.1) == pytest.approx(math.log(a.scale) / gamma, abs=1e-6)


def test_under_drift_the_online_interval_covers_ninety_percent():
    rng = np.random.default_rng(0)
    n = 4000
    noise = np.where(np.arange(n) < n // 4, 1.0, 2.5)  # the driving gets wilder
    truth = rng.normal(0.0, noise)
    pred, sd = np.zeros(n), np.ones(n)  # calibrated on the calm first part only
    static = interval_coverage(pred, truth, sd, 0.9)
    online = interval_coverage(pred, truth, sd * adaptive_scales(pred, truth, sd), 0.9)
    assert static < 0.75
    assert online == pytest.approx(0.9, abs=0.02)


def test_late_outcomes_change_the_scale_only_when_they_arrive():
    n = 6
    pred, sd, truth = np.zeros(n), np.ones(n), np.full(n, 10.0)  # every frame missed
    k = adaptive_scales(pred, truth, sd, gamma=0.1, delay=2)
    assert k[:3].tolist() == [1.0, 1.0, 1.0]
    assert k[3] == pytest.approx(math.exp(0.09))
    starts = np.array([True, False, False, True, False, False])
    k = adaptive_scales(pred, truth, sd, starts, gamma=0.1)
    assert k[3] == 1.0 and k[2] > 1.0  # a new drive starts from the validation calibration


def test_gamma_must_be_a_finite_non_negative_step():
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveScale(gamma=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveScale(gamma=float("nan"))
    with pytest.raises(ValueError, match="delay must be >= 0, got -1"):
        AdaptiveScale(delay=-1)


@pytest.mark.parametrize("command", ["evaluate", "predict", "render", "drive"])
def test_a_negative_adapt_gamma_is_refused_on_the_command_line(command, tmp_path):
    from typer.testing import CliRunner

    from steertime.cli import app

    args = {
        "evaluate": ["evaluate", "RUN", "--data", "D", "--out", str(tmp_path / "e")],
        "predict": ["predict", "RUN", "SRC", "--out", str(tmp_path / "p.csv")],
        "render": ["render", "RUN", "SRC", "--out", str(tmp_path / "v.mp4")],
        "drive": ["drive", "RUN"],
    }[command]
    r = CliRunner().invoke(app, [*args, "--adapt-gamma", "-1"])
    assert r.exit_code == 2
    assert "Invalid value for '--adapt-gamma'" in r.output
    assert "greater than or equal to" in r.output


def test_evaluate_scores_the_online_interval_beside_the_static_one(spread_run, tiny_cache):
    result, frames, _ = evaluate(spread_run, tiny_cache, split="test", adapt_gamma=0.1)
    m = result["outputs"]["speed"]["models"][result["primary"]]
    pred, sd = frames.preds[result["primary"]]["speed"], frames.spreads[result["primary"]]["speed"]
    truth = frames.truth["speed"]
    starts = np.r_[True, frames.drive[1:] != frames.drive[:-1]]
    k = adaptive_scales(pred, truth, sd, starts, gamma=0.1)
    assert m["coverage90_adaptive"] == pytest.approx(interval_coverage(pred, truth, sd * k, 0.9))
    assert m["mean_spread_adaptive"] == pytest.approx(float(np.mean(sd * k)))
    assert any("recalibrated online" in v.text for v in verdicts(result))
    off, _, _ = evaluate(spread_run, tiny_cache, split="test", adapt_gamma=0.0)
    assert "coverage90_adaptive" not in off["outputs"]["speed"]["models"][off["primary"]]


def _camera_frames(n: int) -> np.ndarray:
    """Frames as the simulator's camera gives them (320x160), before preprocessing."""
    return np.random.default_rng(0).integers(0, 256, (n, 160, 320, 3), dtype=np.uint8)


def test_the_predictor_rescales_the_spread_it_is_told_it_missed(spread_run, tmp_path):
    frames = _camera_frames(6)
    plain = Predictor.from_run(spread_run)
    p = Predictor.from_run(spread_run, adapt_gamma=0.2)
    out = p.step(frames[0], 0.0)
    assert out["speed_std"] == pytest.approx(plain.step(frames[0], 0.0)["speed_std"])
    assert p.observe({"speed": out["speed"] + 100.0}) == {"speed": True}
    widened = p.step(frames[1], 0.1)
    ref = plain.step(frames[1], 0.1)
    assert widened["speed_std"] == pytest.approx(ref["speed_std"] * math.exp(0.2 * 0.9))
    assert widened["steering_std"] == pytest.approx(ref["steering_std"])  # not observed
    p.reset(calibration=False)  # memory gone, the online scale kept
    assert p.adapt["speed"].scale == pytest.approx(math.exp(0.2 * 0.9))
    p.reset()
    assert p.observe({"speed": 1.0}) == {}  # nothing predicted since the reset
    again = p.step(frames[0], 0.0)
    assert again["speed_std"] == pytest.approx(out["speed_std"])
    # The exported graph streams through the same rule.
    onnx = OnnxPredictor(export_onnx(spread_run, tmp_path / "onnx"), adapt_gamma=0.2)
    o = onnx.step(frames[0], 0.0)
    onnx.observe({"speed": o["speed"] + 100.0})
    assert onnx.step(frames[1], 0.1)["speed_std"] == pytest.approx(widened["speed_std"], rel=1e-4)


def test_a_restart_in_the_loop_forgets_the_road_but_keeps_the_online_scale(spread_run):
    from steertime.sim.drive import _restart

    frames = _camera_frames(2)
    p = Predictor.from_run(spread_run, adapt_gamma=0.2)
    p.observe({"speed": p.step(frames[0], 0.0)["speed"] + 100.0})
    _restart(p)  # the car was put back on the road
    assert p.last_t is None and p.adapt["speed"].scale == pytest.approx(math.exp(0.2 * 0.9))

    class StandIn:  # a scripted driver: `drive` asks only for reset() and step()
        resets = 0

        def reset(self) -> None:
            self.resets += 1

    s = StandIn()
    _restart(s)
    assert s.resets == 1


def test_observe_refuses_what_it_cannot_use(spread_run, tiny_cache, tmp_path):
    frame = _camera_frames(1)[0]
    with pytest.raises(StreamError, match="adapt_gamma"):
        Predictor.from_run(spread_run).observe({"speed": 1.0})
    p = Predictor.from_run(spread_run, adapt_gamma=0.05)
    p.step(frame, 0.0)
    with pytest.raises(StreamError, match="no output named"):
        p.observe({"throttle": 0.3})
    with pytest.raises(StreamError, match="not finite"):
        p.observe({"speed": float("nan")})
    from steertime.train import train

    cfg = small_train_config(tiny_cache, tmp_path / "plain", "train.epochs=1")
    with pytest.raises(StreamError, match="train.spread"):
        Predictor.from_run(train(cfg, progress=False), adapt_gamma=0.05)


def test_the_calibration_benchmark_runs_on_a_spread_run(spread_run, tiny_cache):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "calibration_online.py"
    args = [str(tiny_cache), str(spread_run), "--split", "test", "--gammas", "0.05"]
    r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "speed" in r.stdout and "online gamma 0.05" in r.stdout and "as trained" in r.stdout


def test_drive_scores_and_recalibrates_the_intervals_of_what_the_car_measures(spread_run):
    from steertime.sim import drive

    static = drive(Predictor.from_run(spread_run), [5], 3.0).summary()
    p = Predictor.from_run(spread_run, adapt_gamma=0.2)
    online = drive(p, [5], 3.0).summary()
    # The run predicts steering and speed: the car measures only its speed.
    assert set(static["coverage90_measured"]) == set(online["coverage90_measured"]) == {"speed"}
    road = online["per_road"][0]
    assert road["interval_frames"]["speed"] == round(road["seconds"] * 10)
    assert p.adapt["speed"].scale != 1.0 and p.adapt["steering"].scale == 1.0


def test_drive_cli_refuses_adapt_gamma_without_a_spread(tmp_path, tiny_cache):
    from typer.testing import CliRunner

    from steertime.cli import app
    from steertime.train import train

    run = train(
        small_train_config(tiny_cache, tmp_path / "plain", "train.epochs=1"), progress=False
    )
    r = CliRunner().invoke(
        app, ["drive", str(run), "--roads", "1", "--minutes", "0.05", "--adapt-gamma", "0.05"]
    )
    assert r.exit_code != 0
    said = str(r.output) + str(r.exception)
    assert "--adapt-gamma needs a run trained with train.spread=true" in said


def test_render_recalibrates_the_drawn_interval_from_the_recording(
    spread_run, shared_data, tmp_path
):
    from steertime.data import read_drives
    from steertime.evaluate.render import render

    (d,) = read_drives(shared_data / "udacity_sim_track1")
    clip = d.slice(np.arange(900, 930), "clip")
    p = Predictor.from_run(spread_run, adapt_gamma=0.2)
    render(p, [clip], tmp_path / "o.mp4")
    assert (tmp_path / "o.mp4").stat().st_size > 0
    # Both outputs are in the recording: both intervals were told the truth.
    assert p.adapt["speed"].scale != 1.0 and p.adapt["steering"].scale != 1.0


def test_predict_writes_spreads_recalibrated_from_the_recording(spread_run, shared_data):
    from steertime.data import read_drives
    from steertime.stream.run import predict_drives

    (d,) = read_drives(shared_data / "udacity_sim_track1")
    clip = d.slice(np.arange(900, 930), "clip")
    plain = predict_drives(Predictor.from_run(spread_run), [clip])
    online = predict_drives(Predictor.from_run(spread_run, adapt_gamma=0.2), [clip])
    assert online["speed"].tolist() == pytest.approx(plain["speed"].tolist())  # means kept
    assert online["speed_std"].iloc[0] == pytest.approx(plain["speed_std"].iloc[0])
    ratio = online["speed_std"] / plain["speed_std"]
    # each frame's spread rescaled by what the frames before it missed or held
    pred, sd = plain["speed"].to_numpy(), plain["speed_std"].to_numpy()
    k = adaptive_scales(pred, plain["true_speed"].to_numpy(), sd, gamma=0.2)
    assert ratio.to_numpy() == pytest.approx(k, rel=1e-5)
