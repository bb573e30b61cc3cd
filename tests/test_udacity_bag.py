"""Udacity Challenge 2 ROS bags, read with pure-Python rosbags from small written bags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import Cache, FrameSpec, ReadOptions, read_drives
from steertime.data.frames import FrameError
from steertime.data.resolve import resolve
from steertime.errors import DataError
from tests.conftest import LAYOUT
from tests.hmb_bags import REPORT_TYPE, T0_NS, frame_value, steering_at, write_hmb_bag

runner = CliRunner()


def _grey(frames) -> list[float]:
    out = []
    for _, f in frames.iter_frames():
        assert not isinstance(f, FrameError), f
        out.append(float(f.mean()))
    return out


def test_bag_frames_and_signals_align_to_camera_stamps(tmp_path):
    from rosbags.typesys import Stores, get_typestore

    stamps = write_hmb_bag(tmp_path / "HMB_1.bag", 30)
    assert b"compression=bz2" in (tmp_path / "HMB_1.bag").read_bytes()  # bz2 chunks
    # the steering type is known from the bag alone, not from any store rosbags ships
    assert REPORT_TYPE not in get_typestore(Stores.ROS1_NOETIC).fielddefs
    assert resolve(tmp_path / "HMB_1.bag").format == "udacity_bag"
    assert resolve(tmp_path).format == "udacity_bag"  # a folder of bags
    (d,) = read_drives(tmp_path / "HMB_1.bag")
    assert d.rows.tolist() == stamps  # a frame's row is its stamp: Challenge 2's frame_id
    t = (np.asarray(stamps) - T0_NS) * 1e-9
    np.testing.assert_allclose(d.timestamps - d.timestamps[0], t, atol=1e-6)
    # 50 Hz reports interpolated onto 20 Hz frames: within linear-interpolation error
    np.testing.assert_allclose(d.signals["steering"], steering_at(t), atol=2e-4)
    np.testing.assert_allclose(d.signals["speed"], 10 + t, atol=1e-5)
    assert d.units["steering"].name == "rad" and d.units["steering"].angle_of == "steering_wheel"
    assert d.units["torque"].name == "N*m" and np.allclose(d.signals["torque"], 0.5)
    # each frame is the JPEG written at its stamp (grey level = frame index * 10)
    np.testing.assert_allclose(_grey(d.frames), [frame_value(k) for k in range(30)], atol=2)
    sub = d.frames.subset([3, 7, 8])
    np.testing.assert_allclose(_grey(sub), [frame_value(k) for k in (3, 7, 8)], atol=2)


def test_chunks_read_ahead_give_what_rosbags_gives(tmp_path):
    from steertime.data.readers.rosbag import messages, open_bag

    write_hmb_bag(tmp_path / "c.bag", 40, noise=40, chunk_bytes=16 * 1024)
    reader = open_bag(tmp_path / "c.bag")
    try:
        assert len(reader.chunks) > 5
        ours = [(c.id, t, bytes(raw)) for c, t, raw in messages(reader, reader.connections)]
        theirs = [(c.id, t, bytes(raw)) for c, t, raw in reader.messages()]
    finally:
        reader.close()
    assert ours == theirs and len(ours) > 40


def test_split_bags_of_one_drive_are_concatenated(tmp_path):
    write_hmb_bag(tmp_path / "b.bag", 20, first_frame=20, compress=False)
    write_hmb_bag(tmp_path / "a.bag", 20, first_frame=0)
    write_hmb_bag(tmp_path / "later.bag", 10, first_frame=2000)  # 100 s on: another drive
    one, two = read_drives(tmp_path)
    assert (one.name, len(one)) == ("a..b", 40) and (two.name, len(two)) == ("later", 10)
    assert any("2 bags read as one drive" in p for p in one.problems)
    np.testing.assert_allclose(_grey(one.frames), [frame_value(k) for k in range(40)], atol=2)
    t = (one.rows - T0_NS) * 1e-9
    np.testing.assert_allclose(one.signals["steering"], steering_at(t), atol=2e-4)


def test_bag_without_steering_is_refused_unless_frames_alone_are_asked(tmp_path):
    write_hmb_bag(tmp_path / "HMB_3.bag", 12, steering=False)
    with pytest.raises(DataError, match=r"HMB_3\.bag.*12 camera frames but no /vehicle/steering"):
        read_drives(tmp_path / "HMB_3.bag")
    (d,) = read_drives(tmp_path / "HMB_3.bag", "udacity_bag_frames")
    assert len(d) == 12 and d.signals == {}


def test_torque_from_its_own_topic_when_the_report_lacks_it(tmp_path):
    stamps = write_hmb_bag(tmp_path / "t.bag", 20, torque_topic=True)
    (d,) = read_drives(tmp_path / "t.bag")
    # the Float32 has no header: its receive time (stamp + 2 ms) is its time
    t = (np.asarray(stamps) - T0_NS) * 1e-9
    np.testing.assert_allclose(d.signals["torque"], 0.25 + t - 0.002, atol=1e-5)
    assert d.units["torque"].name == "N*m"


def test_bad_bags_name_the_file(tmp_path):
    (tmp_path / "bad.bag").write_bytes(b"#ROSBAG V2.0\n" + b"\0" * 64)
    with pytest.raises(DataError, match=r"bad\.bag: cannot read ROS bag"):
        read_drives(tmp_path / "bad.bag")
    write_hmb_bag(tmp_path / "ok.bag", 5)
    with pytest.raises(DataError, match=r"ok\.bag: no /left_camera/image_color/compressed topic"):
        read_drives(tmp_path / "ok.bag", options=ReadOptions(camera="left"))


def test_cli_inspect_prepare_predict_render_on_a_folder_of_bags(tmp_path):
    from steertime.models.checkpoint import save_untrained_run

    bags = tmp_path / "bags"
    bags.mkdir()
    write_hmb_bag(bags / "a.bag", 15)
    write_hmb_bag(bags / "b.bag", 15, first_frame=15)
    r = runner.invoke(app, ["inspect", str(bags)])
    assert r.exit_code == 0, r.output
    assert "format udacity_bag" in r.output and "30 frames" in r.output
    r = runner.invoke(
        app, ["prepare", str(bags), "--out", str(tmp_path / "c"), "--size", "24x32", "--guard", "1"]
    )
    assert r.exit_code == 0, r.output
    c = Cache.open(tmp_path / "c")
    assert c.n_frames == 30 and c.manifest["drives"][0]["format"] == "udacity_bag"
    run = save_untrained_run(
        tmp_path / "run", "pilotnet", LAYOUT, FrameSpec(66, 200).to_dict(), (48, 64)
    )
    r = runner.invoke(app, ["predict", str(run), str(bags), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 30 and p["row"].iloc[0] == T0_NS and "true_steering" in p
    r = runner.invoke(app, ["render", str(run), str(bags), "--out", str(tmp_path / "o.mp4")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o.mp4").stat().st_size > 0
