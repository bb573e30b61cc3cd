"""The simulator: determinism, renderer geometry, expert quality, closed-loop scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steertime.errors import SteertimeError
from steertime.sim import (
    CameraSpec,
    World,
    drive,
    heldout_seeds,
    make_road,
    render,
    simulate,
    training_seeds,
)
from steertime.sim.camera import _coverage
from steertime.sim.drive import (
    RoadResult,
    autonomy_difference,
    autonomy_interval,
    poisson_upper,
    speed_command,
)
from steertime.sim.expert import Expert
from steertime.sim.road import DS, LANE_WIDTH, Look, Road


def test_roads_are_deterministic_by_seed_and_differ_across_seeds():
    a, b, c = make_road(3), make_road(3), make_road(4)
    assert np.array_equal(a.curvature, b.curvature) and a.look == b.look
    assert not np.array_equal(a.curvature[:2000], c.curvature[:2000])
    # curvature changes smoothly: no jumps between samples
    assert np.max(np.abs(np.diff(a.curvature))) < 0.02 * DS
    assert set(training_seeds(0, 50)).isdisjoint(heldout_seeds(0, 50))


def test_frames_are_deterministic_by_seed():
    w1, w2 = World(7, noise_seed=1), World(7, noise_seed=1)
    for _ in range(5):
        w1.step(10.0, 0.3, 0.0)
        w2.step(10.0, 0.3, 0.0)
    assert np.array_equal(w1.frame(), w2.frame())


def _straight_road() -> Road:
    n = 4000
    s = np.arange(n) * DS
    look = Look((90, 90, 90), (80, 130, 60), (150, 180, 220), 1.0, 0.0, 0.0, 0.0)
    return Road(0, s, s.copy(), np.zeros(n), np.zeros(n), np.zeros(n), look)


def test_straight_road_lines_meet_at_the_vanishing_point():
    road = _straight_road()
    cam = CameraSpec(160, 320)
    # On the centreline, the two edge lines are symmetric and both in view.
    img = render(road, 100.0, 0.0, 0.0, 100.0, cam).astype(float)
    bright = img.mean(axis=2) > 200  # painted lines
    rows = [
        r
        for r in range(int(0.55 * 160), 160, 4)
        if bright[r].sum() >= 2 and bright[r, 0] == 0 and bright[r, -1] == 0
    ]
    assert len(rows) > 5
    # fit the left and right edge lines (outermost bright pixels) and intersect them
    lefts = [(r, np.flatnonzero(bright[r])[0]) for r in rows]
    rights = [(r, np.flatnonzero(bright[r])[-1]) for r in rows]
    (al, bl), (ar, br) = (
        np.polyfit([p[0] for p in ps], [p[1] for p in ps], 1) for ps in (lefts, rights)
    )
    r_meet = (br - bl) / (al - ar)
    col = al * r_meet + bl
    assert r_meet == pytest.approx(cam.horizon * cam.height, abs=2.0)
    assert col == pytest.approx(cam.width / 2, abs=3.0)  # straight ahead


def test_line_coverage_is_antialiased():
    cov = _coverage(np.array([0.0, 0.1, 0.2, 1.0]), 0.1, np.array([0.2]))
    assert cov[0] == 1.0 and 0 < cov[1] < 1 and cov[3] == 0.0


def test_expert_keeps_the_car_centred():
    for seed in (1, 2):
        w = World(seed)
        e = Expert(w.dt, np.random.default_rng(seed))
        offsets, speeds = [], []
        for _ in range(600):
            w.step(*e.act(w.road, w.state, w.s))
            offsets.append(abs(w.offset))
            speeds.append(w.state.v)
        assert max(offsets) < 0.6 and np.mean(offsets) < 0.15
        assert min(speeds) > 5 and max(speeds) <= 20.5


class _Constant:
    """A 'model' with a fixed output, through the same interface as a Predictor."""

    source_size = (66, 200)

    def __init__(self, steering: float) -> None:
        self.steering = steering

    def reset(self) -> None:
        pass

    def step(self, frame, t):
        return {"steering": self.steering}


def test_zero_steering_accrues_interventions_on_curves():
    report = drive(_Constant(0.0), heldout_seeds(0, 2), 60.0)
    s = report.summary()
    assert s["interventions"] >= 5 and s["autonomy_pct"] < 60
    assert s["km"] > 0.5 and math.isfinite(s["mean_abs_offset_m"])


def _roads(interventions: list[int], seconds: float = 120.0) -> list[RoadResult]:
    return [RoadResult(i, seconds, 2000.0, k, 0.1, 0.5, 4.0) for i, k in enumerate(interventions)]


@pytest.mark.parametrize(("k", "upper"), [(0, 3.689), (1, 5.572), (5, 11.668), (10, 18.390)])
def test_poisson_upper_bound_matches_garwood_table(k, upper):
    assert poisson_upper(k) == pytest.approx(upper, abs=2e-3)


def test_autonomy_interval_is_not_certain_after_a_clean_run():
    # 100% over 20 minutes: the bootstrap alone would say [100, 100]
    lo, hi = autonomy_interval(_roads([0] * 10))
    assert hi == 1.0
    assert lo == pytest.approx(1 - 3.689 * 6 / 1200, abs=1e-4)


def test_autonomy_interval_brackets_the_estimate_and_widens_when_failures_cluster():
    spread = _roads([1, 0, 1, 0, 1, 0, 1, 0, 0, 0])
    clustered = _roads([4, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    for roads in (spread, clustered):
        lo, hi = autonomy_interval(roads)
        point = 1 - 4 * 6 / 1200
        assert lo <= point <= hi
    # same count, one bad road: less is known about the next road
    assert autonomy_interval(clustered)[1] - autonomy_interval(clustered)[0] > (
        autonomy_interval(spread)[1] - autonomy_interval(spread)[0]
    )


def test_autonomy_difference_is_paired_and_needs_the_same_roads():
    a, b = _roads([0] * 10), _roads([2, 3, 1, 2, 2, 3, 1, 2, 2, 1])
    d, lo, hi = autonomy_difference(a, b)
    assert d == pytest.approx(19 * 6 / 1200) and 0 < lo <= d <= hi
    assert autonomy_difference(a, a) == (0.0, 0.0, 0.0)
    d, lo, hi = autonomy_difference(a, _roads([0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
    assert lo <= 0 <= hi  # one intervention cannot separate two models
    with pytest.raises(SteertimeError, match="same roads"):
        autonomy_difference(a, a[:5])


def test_speed_command_prefers_target_speed():
    # An echo of the measured speed is not a command: the road ahead decides (see docs).
    assert speed_command({"steering": 0.0, "speed": 14.0, "target_speed": 10.8}) == 10.8
    assert speed_command({"steering": 0.0, "speed": 14.0}) == 14.0
    assert speed_command({"steering": 0.0}) is None


def test_simulate_records_the_expert_speed_command(tmp_path):
    from steertime.data import read_drives

    (d,) = read_drives(simulate(tmp_path / "sim", 1.0, seed=3))
    v, target = d.signals["speed"], d.signals["target_speed"]
    assert d.units["target_speed"].name == "m/s"
    # it commands v_max on the straights and less for curves; the car follows it, except
    # during speed bumps, which make it too fast or too slow while the label stays put
    assert 0 < target.min() < target.max() <= 20.0
    gap = np.abs(v[50:] - target[50:])
    assert np.median(gap) < 1.5 and gap.max() > 1.5


def test_lane_geometry():
    road = make_road(5)
    x, y = road.lane_center(200.0)
    s, off, _ = road.project(float(x), float(y), 200.0)
    assert s == pytest.approx(200.0, abs=0.6) and off == pytest.approx(0.0, abs=0.05)
    x2, y2 = road.lane_center(200.0, offset=LANE_WIDTH / 2 - 0.5)
    assert road.project(float(x2), float(y2), 200.0)[1] == pytest.approx(0.5, abs=0.05)


def test_demo_pipeline_small(tmp_path):
    """The demo end to end at toy scale: every stage runs and the report has its parts."""
    import json

    from steertime.demo import run_demo

    report = run_demo(tmp_path / "demo", minutes=0.6, epochs=1, roads=1, road_seconds=5)
    text = report.read_text()
    assert 'id="closed-loop"' in text and 'id="metrics-steering"' in text and "pilotnet" in text
    closed = json.loads((tmp_path / "demo" / "closed_loop.json").read_text())
    assert set(closed) == {"pilotnet", "cnn_lstm"}
    assert all(0 <= r["autonomy_pct"] <= 100 for r in closed.values())
    # both models predict the car's steering torque, scored in the loop and in the report
    assert all(r["torque_rmse_nm"] > 0 for r in closed.values()) and "torque RMSE" in text
    assert "95% CI" in text and "%</td>" in text
    paired = json.loads((tmp_path / "demo" / "closed_loop_compare.json").read_text())
    assert (paired["a"], paired["b"], paired["roads"]) == ("cnn_lstm", "pilotnet", 1)
    assert 'id="closed-loop-paired"' in text and "worst |offset| per road" in text
    assert (tmp_path / "demo" / "overlay.mp4").stat().st_size > 0
    # the LSTM's labels are led by the expert's 0.2 s reaction delay at 10 Hz; PilotNet's not
    from steertime.train import load_config

    runs = tmp_path / "demo" / "runs"
    lstm, pilot = (
        load_config(runs / "cnn_lstm" / "config.yaml"),
        load_config(runs / "pilotnet" / "config.yaml"),
    )
    assert (lstm.data.lead, lstm.train.seq_len) == (2, 5)
    assert pilot.data.lead == 0


def test_drive_cli_writes_results_and_video(tmp_path):
    import json

    import av
    from typer.testing import CliRunner

    from steertime.cli import app
    from steertime.data import FrameSpec
    from tests.conftest import make_run

    run = make_run(tmp_path, "cnn_gru", source_size=(160, 320), spec=FrameSpec(66, 200, 50, 0))
    r = CliRunner().invoke(
        app,
        [
            "drive",
            str(run),
            "--roads",
            "1",
            "--minutes",
            "0.1",
            "--out",
            str(tmp_path / "r.json"),
            "--video",
            str(tmp_path / "d.mp4"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "autonomy" in r.output and "95% CI" in r.output
    s = json.loads((tmp_path / "r.json").read_text())
    assert s["roads"] == 1 and 0 <= s["autonomy_pct"] <= 100
    lo, hi = s["autonomy_ci95_pct"]
    assert lo <= s["autonomy_pct"] <= hi
    with av.open(str(tmp_path / "d.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 60
