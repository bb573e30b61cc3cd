"""The Donkeycar part inside Donkeycar 5.3's own `Vehicle` loop, on a real tub; int8 export."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import FrameSpec
from steertime.data.readers.donkey import tub_view
from steertime.errors import SteertimeError
from steertime.integrations.donkeycar import SteertimePilot
from steertime.models import OutputLayout, list_models
from steertime.models.checkpoint import save_untrained_run
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from tests.conftest import tree_digest

TUB_LAYOUT = OutputLayout(
    ["steering", "throttle"],
    [0.0, 0.3],
    [0.5, 0.1],
    units=[
        {"name": "normalized", "to_radians": None, "angle_of": None},
        {"name": "fraction", "to_radians": None, "angle_of": None},
    ],
)
DK_SIZE = (120, 160)  # Donkeycar's camera and model input
AROUND_GAP = 40  # records replayed on each side of the tub's 59 s gap


def _vehicle_module():
    # `import donkeycar` calls logging.basicConfig(level=INFO) on the root logger; put the
    # root logger back so the rest of the suite's log capture is not changed by it.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from donkeycar.vehicle import Vehicle
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("donkeycar is missing: CI installs it (.ci/run)")
        pytest.skip("donkeycar 5.3 not installed (pip install --no-deps donkeycar==5.3.0)")
    finally:
        root.handlers[:], root.level = handlers, level
    return Vehicle


def _tub_run(root, name="cnn_lstm", spec=FrameSpec(*DK_SIZE), **cfg):
    return save_untrained_run(
        root / f"run_{name}", name, TUB_LAYOUT, spec.to_dict(), DK_SIZE, seed=1, **cfg
    )


@pytest.fixture(scope="module")
def tub_window(shared_data, tmp_path_factory):
    """A view of the real tub: AROUND_GAP records on each side of its 59 s gap."""
    tub = shared_data / "donkey_rc_tub"
    data = tub / "data"
    meta = json.loads((data / "manifest.json").read_text().splitlines()[4])
    recs = []
    for name in meta["paths"]:
        recs += [json.loads(x) for x in (data / name).read_text().splitlines() if x.strip()]
    t = np.array([r["_timestamp_ms"] for r in recs])
    gap = int(np.argmax(np.diff(t))) + 1
    assert t[gap] - t[gap - 1] > 30_000  # the README's 59 s gap
    keep = {r["_index"] for r in recs[gap - AROUND_GAP : gap + AROUND_GAP]}
    before = tree_digest(tub)
    view = tub_view(
        tub, tmp_path_factory.mktemp("tub") / "view", {r["_index"] for r in recs} - keep
    )
    yield view
    assert tree_digest(tub) == before  # neither reader wrote to the shared tub


class ReplayCamera:
    """A Donkeycar camera part that replays a tub through Donkeycar's own tub reader; its
    `now` is the record's clock, which the pilot reads as its time."""

    def __init__(self, view) -> None:
        _vehicle_module()  # skips without Donkeycar; imports it with the root logger kept
        from donkeycar.parts.tub_v2 import Tub

        tub = Tub(str(view / "data"), read_only=True)
        self.records = list(tub)
        self.images = tub.images_base_path
        tub.close()
        self.i, self.now = 0, 0.0

    def run(self):
        r = self.records[self.i]
        self.i += 1
        self.now = r["_timestamp_ms"] / 1000
        with Image.open(os.path.join(self.images, r["cam/image_array"])) as im:
            return np.asarray(im.convert("RGB"))


class Frames:
    """A camera part that hands out given frames (None and broken ones included)."""

    def __init__(self, frames) -> None:
        self.frames, self.i, self.now = list(frames), 0, 0.0

    def run(self):
        f = self.frames[self.i]
        self.i, self.now = self.i + 1, self.now + 0.05
        return f


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def run(self, angle, throttle):
        self.rows.append((angle, throttle))


def _drive(camera, pilot, loops: int) -> list[tuple]:
    """Donkeycar's loop as manage.py builds it: camera, pilot under run_pilot, a consumer."""
    Vehicle = _vehicle_module()
    v = Vehicle()
    v.mem.put(["run_pilot"], [True])
    v.add(camera, outputs=["cam/image_array"])
    v.add(
        pilot,
        inputs=["cam/image_array"],
        outputs=["pilot/angle", "pilot/throttle"],
        run_condition="run_pilot",
    )
    rec = Recorder()
    v.add(rec, inputs=["pilot/angle", "pilot/throttle"])
    v.start(rate_hz=10_000, max_loop_count=loops)
    assert len(rec.rows) == loops, "the vehicle loop stopped early"
    return rec.rows


def test_vehicle_loop_on_a_real_tub_equals_predict(tmp_path, tub_window):
    run = _tub_run(tmp_path)
    export = export_onnx(run, tmp_path / "export")
    r = CliRunner().invoke(
        app, ["predict", str(run), str(tub_window), "--out", str(tmp_path / "p.csv")]
    )
    assert r.exit_code == 0, r.output
    want = pd.read_csv(tmp_path / "p.csv")
    assert len(want) == 2 * AROUND_GAP and (want["status"] == "ok").all()
    assert want["drive"].nunique() == 2  # predict resets at the gap: so must the part

    camera = ReplayCamera(tub_window)
    pilot = SteertimePilot(export, clock=lambda: camera.now)
    assert isinstance(pilot.predictor, OnnxPredictor)
    rows = _drive(camera, pilot, len(want))
    got = np.array(rows, dtype=float)
    assert np.abs(got[:, 0] - np.clip(want["steering"], -1, 1)).max() < 1e-4
    assert np.abs(got[:, 1] - np.clip(want["throttle"], -1, 1)).max() < 1e-4
    # The state matters here: without the reset at the gap the part would differ.
    carried = SteertimePilot(export, max_gap_s=1e9, clock=lambda: camera.now)
    camera.i = 0
    later = np.array(_drive(camera, carried, len(want)), dtype=float)
    assert np.abs(later[AROUND_GAP:, 0] - got[AROUND_GAP:, 0]).max() > 1e-4


def test_a_gap_resets_the_state(tmp_path, tub_window):
    export = export_onnx(_tub_run(tmp_path), tmp_path / "export")
    frames = [ReplayCamera(tub_window).run() for _ in range(8)]
    clock = {"t": 0.0}
    pilot = SteertimePilot(export, clock=lambda: clock["t"])
    for i, f in enumerate(frames[:6]):
        clock["t"] = 0.05 * i
        pilot.run(f)
    fresh = SteertimePilot(export).run(frames[7])
    clock["t"] += 0.05  # a short gap carries the state: not the fresh answer
    assert abs(pilot.run(frames[6])[0] - SteertimePilot(export).run(frames[6])[0]) > 1e-5
    clock["t"] += pilot.predictor.max_gap_s + 0.5  # user mode, then pilot again
    assert pilot.run(frames[7]) == pytest.approx(fresh, abs=1e-6)


def test_bad_frames_are_skipped_and_the_loop_goes_on(tmp_path, tub_window, caplog):
    export = export_onnx(_tub_run(tmp_path, "cnn_gru"), tmp_path / "export")
    good = [ReplayCamera(tub_window).run() for _ in range(3)]
    bad = [
        None,
        np.zeros((100, 100, 3), np.uint8),  # another aspect ratio than the 160x120 camera
        good[0].astype(np.float32),
        good[0][:, :, 0],
        "not a frame",
    ]
    # A camera part returning None leaves the key unwritten (Donkeycar keeps the last frame),
    # so the pilot sees None only before the camera's first frame, as in a real car.
    stream = [bad[0], good[0], bad[1], good[1], bad[2], bad[3], bad[4], good[2]]
    pilot = SteertimePilot(export, backend="onnx")
    with caplog.at_level(logging.WARNING, "steertime.integrations.donkeycar"):
        rows = _drive(Frames(stream), pilot, len(stream))
    assert "skipped a frame" in caplog.text and "None" in caplog.text
    assert pilot.skipped == len(bad) and pilot.frames == len(good)
    assert [rows[i] for i in (0, 2, 4, 5, 6)] == [(None, None)] * len(bad)
    clean = SteertimePilot(export)
    for i, f in zip((1, 3, 7), good, strict=True):  # the state went on over the bad frames
        assert rows[i] == pytest.approx(clean.run(f), abs=1e-6)


def test_throttle_constant_angle_clip_and_bad_arguments(tmp_path):
    run = _tub_run(tmp_path)
    frame = np.full((*DK_SIZE, 3), 90, np.uint8)
    angle, throttle = SteertimePilot(run, throttle=0.25).run(frame)
    assert throttle == 0.25 and -1 <= angle <= 1
    steer_only = OutputLayout(["steering"], [0.0], [50.0], units=[{"name": "normalized"}])
    wild = save_untrained_run(
        tmp_path / "wild", "pilotnet", steer_only, FrameSpec(*DK_SIZE).to_dict(), DK_SIZE
    )
    angles = [SteertimePilot(wild).run(np.full((*DK_SIZE, 3), v, np.uint8)) for v in (0, 255)]
    assert all(a in (-1.0, 1.0) and t is None for a, t in angles)  # std 50: far past full lock
    with pytest.raises(SteertimeError, match="no such run"):
        SteertimePilot(tmp_path / "missing")
    with pytest.raises(SteertimeError, match="no model.onnx"):
        SteertimePilot(run, backend="onnx")
    with pytest.raises(SteertimeError, match="throttle must be in"):
        SteertimePilot(run, throttle=3)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_as_a_part(name, tmp_path):
    spec = FrameSpec(66, 88, crop_top=40, crop_bottom=0)  # PilotNet's convolutions need 66 rows
    run = save_untrained_run(tmp_path / name, name, TUB_LAYOUT, spec.to_dict(), DK_SIZE)
    export_onnx(run, run / "export")  # a run's own export/ is what the part finds
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (*DK_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    onnx_part, torch_part = SteertimePilot(run), SteertimePilot(run, backend="torch")
    assert isinstance(onnx_part.predictor, OnnxPredictor)
    assert isinstance(torch_part.predictor, Predictor)
    for f in frames:
        (a, t), (b, u) = onnx_part.run(f), torch_part.run(f)
        assert -1 <= a <= 1 and -1 <= t <= 1
        assert abs(a - b) < 1e-4 and abs(t - u) < 1e-4
    onnx_part.shutdown()


@pytest.mark.parametrize(
    "name,missing_input", [("cnn_lstm", False), ("cnn_lstm", True), ("cnn_tcn", False)]
)
def test_int8_export_calibrates_on_the_cache(tmp_path, tiny_cache, name, missing_input):
    spec = json.loads((tiny_cache / "manifest.json").read_text())["frame"]
    run = save_untrained_run(
        tmp_path / "run", name, TUB_LAYOUT, spec, (160, 320), missing_input=missing_input
    )
    out = tmp_path / "int8"
    cmd = ["export", str(run), "--quantize", "int8", "--calibrate", str(tiny_cache), "-o", str(out)]
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    side = json.loads((out / "model.json").read_text())
    assert (
        side["quantization"]["type"] == "int8" and side["quantization"]["calibration"]["frames"] > 0
    )
    f32, i8 = OnnxPredictor(export_onnx(run, tmp_path / "f32")), OnnxPredictor(out)
    from steertime.data import Cache

    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 20)
    a = np.array([f32._run(f) for f in frames])
    b = np.array([i8._run(f) for f in frames])
    assert np.abs(a - b).max() < 0.1 * np.array(TUB_LAYOUT.std).max()
    r = CliRunner().invoke(app, ["export", str(run), "--quantize", "int4"])
    assert isinstance(r.exception, SteertimeError) and "int4" in str(r.exception)
    r = CliRunner().invoke(app, ["export", str(run), "--quantize", "int8"])
    assert "--calibrate" in str(r.exception)  # an untrained run records no cache


def test_steertime_never_needs_donkeycar():
    code = "import sys, steertime.integrations.donkeycar; print('donkeycar' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
