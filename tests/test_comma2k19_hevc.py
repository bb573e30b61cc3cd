"""comma2k19's video.hevc (raw H.265, as the dataset ships it), decoded with PyAV.

The shared sample segment has no video; this writes a short HEVC clip so the decode and
the frame-time alignment are checked. Skipped where PyAV's FFmpeg lacks an HEVC encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steertime.data import read_drives
from steertime.data.frames import FrameError


def _encoder() -> str | None:
    import av

    for name in ("libx265", "hevc"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # PyAV raises UnknownCodecError or ValueError by version
            continue
    return None


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # the dataset's arrays have no .npy extension
        np.save(f, arr)


def _segment(root: Path, n_video: int, n_times: int = 30) -> Path:
    import av

    seg = root / "b0c9d2329ad1606b_2018-08-02--08-34-47" / "7"
    t_frames = 1000.0 + np.arange(n_times) * 0.05  # 20 fps, boot clock
    _save(seg / "global_pose" / "frame_times", t_frames)
    t_can = np.arange(999.9, 1000.0 + n_times * 0.05 + 0.1, 0.012)  # ~83 Hz
    _save(seg / "processed_log" / "CAN" / "steering_angle" / "t", t_can)
    _save(seg / "processed_log" / "CAN" / "steering_angle" / "value", 20 * (t_can - 1000))
    _save(seg / "processed_log" / "CAN" / "speed" / "t", t_can)
    _save(seg / "processed_log" / "CAN" / "speed" / "value", np.full_like(t_can, 25.0))
    with av.open(str(seg / "video.hevc"), "w", format="hevc") as c:
        s = c.add_stream(_encoder(), rate=20)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"x265-params": "log-level=none"}
        for k in range(n_video):
            arr = np.full((48, 64, 3), 8 * k, np.uint8)  # grey level tells the frame
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return seg


@pytest.mark.skipif(_encoder() is None, reason="PyAV's FFmpeg has no HEVC encoder here")
def test_hevc_frames_decode_in_step_with_frame_times(tmp_path):
    seg = _segment(tmp_path, 30)
    (d,) = read_drives(seg)
    assert d.format == "comma2k19" and len(d) == 30 and not d.problems
    grey = []
    for _, f in d.frames.iter_frames():
        assert not isinstance(f, FrameError), f
        grey.append(float(f.mean()))
    np.testing.assert_allclose(grey, 8 * np.arange(30), atol=3)  # frame k at frame_times[k]
    np.testing.assert_allclose(d.signals["steering"], 20 * np.arange(30) * 0.05, atol=1e-9)


@pytest.mark.skipif(_encoder() is None, reason="PyAV's FFmpeg has no HEVC encoder here")
def test_hevc_shorter_than_frame_times_is_reported_and_cut(tmp_path):
    seg = _segment(tmp_path, 20)
    (d,) = read_drives(seg)
    assert len(d) == 20
    assert any("video has 20 frames for 30 frame times" in p for p in d.problems)
    last = [f for _, f in d.frames.iter_frames()][-1]
    assert abs(float(last.mean()) - 8 * 19) <= 3
