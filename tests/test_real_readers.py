"""Every reader on the real recordings in ../shared/data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steertime.data import detect_format, read_drives
from steertime.data.cache import prepare_drives
from tests.conftest import tree_digest


@pytest.mark.parametrize(
    "folder,fmt",
    [
        ("udacity_sim_track1", "udacity_sim"),
        ("donkey_rc_tub", "donkey"),
        ("deeptesla", "deeptesla"),
        ("comma2k19", "comma2k19"),
    ],
)
def test_detects_format(shared_data, folder, fmt):
    assert detect_format(shared_data / folder) == fmt


def test_udacity_sim(shared_data):
    (d,) = read_drives(shared_data / "udacity_sim_track1")
    assert len(d) == 3365
    assert np.all(np.diff(d.timestamps) > 0)
    assert 330 < d.duration_s < 345 and 9 < d.rate_hz < 11
    assert d.units["steering"].to_radians == pytest.approx(math.radians(25))
    assert d.units["steering"].angle_of == "road_wheel"
    # speed arrives in mph (0-30) and must be m/s
    assert d.units["speed"].name == "m/s" and d.signals["speed"].max() < 30 * 0.45
    assert any("side-camera" in p for p in d.problems)
    frame = next(d.frames.iter_frames())[1]
    assert frame.shape == (160, 320, 3) and frame.dtype == np.uint8


def test_donkey_splits_at_gaps(shared_data):
    drives = read_drives(shared_data / "donkey_rc_tub")
    assert sum(len(d) for d in drives) == 5015
    assert len(drives) == 3  # the 59 s gap and a 4.6 s gap
    assert any("59.0 s" in p for p in drives[0].problems)
    for d in drives:
        assert np.all(np.diff(d.timestamps) <= 1.0)
        assert set(d.signals) == {"steering", "throttle"}
    # rows are the tub's record indexes
    assert drives[1].rows[0] == 407


def test_deeptesla_drops_labels_past_video(shared_data):
    drives = {d.name: d for d in read_drives(shared_data / "deeptesla")}
    e1 = drives["epoch01"]
    assert len(e1) == 755 and e1.frames is not None
    assert any("745 label rows" in p for p in e1.problems)
    # epochs without video serve signals and say the frames are missing
    e3 = drives["epoch03"]
    assert e3.frames is None and any("absent" in p for p in e3.problems)
    assert any("frame / 30" in p for p in e3.problems)
    assert np.allclose(np.diff(e3.timestamps), 1 / 30)
    assert e1.units["steering"].name == "deg"


def test_deeptesla_frames_decode_in_order(shared_data):
    (d,) = [d for d in read_drives(shared_data / "deeptesla") if d.name == "epoch01"]
    sub = d.frames.subset([0, 1, 754])
    got = [(i, f.shape) for i, f in sub.iter_frames()]
    assert got == [(0, (180, 320, 3)), (1, (180, 320, 3)), (2, (180, 320, 3))]


def test_comma2k19_signals_without_video(shared_data):
    (d,) = read_drives(shared_data / "comma2k19")
    assert len(d) == 1200 and d.frames is None
    assert any("video.hevc is absent" in p for p in d.problems)
    assert set(d.signals) == {"steering", "speed", "torque"}
    # interpolation onto frame times stays within the CAN signal's range
    assert d.signals["steering"].min() > -5 and d.signals["steering"].max() < 3
    assert d.signals["speed"].min() > 7.9 and d.signals["speed"].max() < 20
    assert 19.5 < d.rate_hz < 20.5


def test_prepare_never_writes_into_source(shared_data, tmp_path):
    src = shared_data / "deeptesla"
    before = tree_digest(src)
    drives = read_drives(src)
    cache = prepare_drives(drives, tmp_path / "cache", source=str(src))
    assert cache.n_frames == 755 and len(cache.manifest["skipped"]) == 9
    assert tree_digest(src) == before
    with pytest.raises(Exception, match="inside the source"):
        prepare_drives(drives, src / "cache", source=str(src))
    assert tree_digest(src) == before
