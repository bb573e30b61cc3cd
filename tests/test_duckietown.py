"""Duckietown through the step protocol (issue 22).

Always: the protocol and the client/bridge pair against the bridge's stub backend (a
unicycle on a lane, numpy only, run with this Python). When the Duckietown venv exists
(`steertime duckietown install`): one short real episode — render, step, lane pose."""

from __future__ import annotations

import io
import struct
import sys

import numpy as np
import pytest
import yaml

from steertime.errors import SteertimeError
from steertime.sim.duckietown import loop, protocol
from steertime.sim.duckietown.client import Bridge
from steertime.sim.duckietown.install import default_venv, is_installed


def test_protocol_round_trip_and_broken_streams() -> None:
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    buf = io.BytesIO()
    fields, payload = protocol.frame_payload(frame)
    protocol.send(buf, {"ok": True, "dist": 0.1, **fields}, payload)
    buf.seek(0)
    header, got = protocol.receive(buf)
    assert header["dist"] == 0.1 and header["nbytes"] == 18
    np.testing.assert_array_equal(protocol.decode_frame(header, got), frame)
    with pytest.raises(protocol.ProtocolError, match="stream ended"):
        protocol.receive(io.BytesIO(buf.getvalue()[:-1]))  # payload cut short
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.receive(io.BytesIO(struct.pack(">I", 3) + b"{x}"))
    with pytest.raises(protocol.ProtocolError, match="does not match"):
        protocol.decode_frame({**header, "shape": [2, 3, 2]}, got)


@pytest.fixture(scope="module")
def stub() -> Bridge:
    with Bridge(python=sys.executable, backend="stub") as b:
        yield b


def test_stub_bridge_steps_and_reports_errors(stub: Bridge) -> None:
    assert stub.backend == "stub" and "stub_straight" in stub.maps
    obs = stub.reset("stub_straight", seed=3, size=(60, 80))
    assert obs.frame.shape == (60, 80, 3) and obs.frame.dtype == np.uint8 and obs.in_lane
    moved = stub.step(0.2, -2.0)  # steering away from the lane moves the offset
    assert moved.t == pytest.approx(0.1) and moved.dist != obs.dist
    assert not np.array_equal(moved.frame, obs.frame)  # the picture follows the pose
    with pytest.raises(SteertimeError, match="unknown stub map 'nowhere'"):
        stub.reset("nowhere", 0)
    with pytest.raises(SteertimeError, match="unknown op"):
        stub._call({"op": "teleport"})
    assert stub.step(0.2, 0.0).frame.shape == (60, 80, 3)  # still serving after errors


def test_drive_counts_interventions_and_expert_holds_the_lane(stub: Bridge) -> None:
    eps = [("stub_drift", 1), ("stub_straight", 2)]
    expert = loop.drive(stub, loop.ExpertPolicy(), eps, seconds=20).summary()
    assert expert["interventions"] == 0 and expert["mean_abs_offset_m"] < 0.1

    class Straight:  # ignores the picture: drifts off the curving lane
        def reset(self) -> None:
            pass

        def step(self, frame: np.ndarray, t: float) -> dict:
            return {"steering": 0.0}

    blind = loop.drive(stub, Straight(), eps, seconds=20).summary()
    assert blind["interventions"] > 0
    assert [r["seed"] for r in blind["per_road"]] == [1, 2]  # paired by episode seed


def test_record_writes_the_generic_format(stub: Bridge, tmp_path) -> None:
    out = loop.record(
        stub, tmp_path / "rec", minutes=0.2, maps=("stub_drift",), seconds_per_episode=6
    )
    mapping = yaml.safe_load((out / "steertime.yaml").read_text())
    assert mapping["signals"]["steering"]["column"] == "omega"
    import pandas as pd

    log = pd.read_csv(out / "log.csv")
    assert len(log) == 120 and log["episode"].nunique() == 2
    assert log["t"].diff().max() > 5  # episodes split by a time gap: separate drives
    assert (log["omega"] != log["omega_executed"]).any()  # recovery bumps were executed
    assert len(list((out / "images").glob("*.jpg"))) == 120


@pytest.mark.skipif(
    not is_installed(),
    reason=f"no Duckietown venv in {default_venv()} (create it: steertime duckietown install)",
)
def test_real_duckietown_episode() -> None:
    with Bridge() as b:
        obs = b.reset("loop_empty", seed=2)
        assert obs.frame.shape == (120, 160, 3) and obs.frame.std() > 5  # rendered, not blank
        assert obs.in_lane and abs(obs.dist) < 1e-6  # starts on the lane centre
        for _ in range(30):
            obs = b.step(loop.SPEED, loop.expert_omega(obs))
        assert not obs.done and obs.in_lane and abs(obs.dist) < loop.OFFSET_LIMIT
        assert obs.speed > 0.05 and obs.t == pytest.approx(3.0)
        back = b.recover(0.3)
        assert abs(back.dist) < 1e-6 and b.step(loop.SPEED, 0.0).speed < 0.5  # no jump back


def test_missing_venv_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STEERTIME_DUCKIETOWN_VENV", str(tmp_path / "none"))
    with pytest.raises(SteertimeError, match="run `steertime duckietown install`"):
        Bridge()


def test_cli_drive_needs_a_run_or_the_expert() -> None:
    from typer.testing import CliRunner

    from steertime.cli import app

    r = CliRunner().invoke(app, ["duckietown", "drive", "--episodes", "1"])
    assert r.exit_code == 2 and "--expert" in r.output


@pytest.mark.skipif(not is_installed(), reason="no Duckietown venv (steertime duckietown install)")
def test_cli_drives_the_expert_on_a_heldout_map(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from steertime.cli import app

    out = tmp_path / "expert.json"
    args = ["duckietown", "drive", "--expert", "--episodes", "1", "--minutes", "0.2"]
    r = CliRunner().invoke(app, [*args, "--maps", "udem1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads(out.read_text())
    assert s["roads"] == 1 and s["interventions"] == 0 and 0 < s["mean_abs_offset_m"] < 0.1
