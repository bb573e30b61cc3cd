"""MIT 6.S094 DeepTesla: `epochNN_front.mkv` + `epochNN_steering.csv` (ts_micro, frame, wheel)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import VideoFrames, video_frame_count
from steertime.data.readers import ReadOptions, read_csv, register_reader
from steertime.data.units import DEG_STEERING_WHEEL
from steertime.errors import DataError

FPS = 30.0
_CSV = re.compile(r"^(epoch\d+)_steering\.csv$")
_FILE = re.compile(r"^(epoch\d+)_(front\.mkv|steering\.csv)$")


def _epochs(path: Path) -> list[Path]:
    """The steering CSVs to read: every epoch in a folder (with or without its video), or
    the one epoch a single `epochNN_front.mkv` or `epochNN_steering.csv` names."""
    if path.is_file():
        m = _FILE.match(path.name)
        return [path.with_name(f"{m.group(1)}_steering.csv")] if m else []
    return sorted(p for p in path.iterdir() if _CSV.match(p.name))


def mismatch(path: Path) -> str | None:
    """None for a DeepTesla folder or one epoch's file; else why not."""
    if path.is_dir():
        return None if _epochs(path) else "no epochNN_steering.csv"
    m = _FILE.match(path.name)
    if m is None:
        return "not an epochNN_front.mkv or epochNN_steering.csv"
    if not _epochs(path)[0].is_file():
        return f"no {m.group(1)}_steering.csv beside it"
    return None


def _read_epoch(csv: Path, opts: ReadOptions) -> list[Drive]:
    epoch = _CSV.match(csv.name).group(1)
    if not csv.is_file():
        raise DataError("steering CSV is missing", csv)
    df = read_csv(csv)
    for c in ("ts_micro", "frame", "wheel"):
        if c not in df.columns:
            raise DataError("missing column", csv, field=c)
        df[c] = pd.to_numeric(df[c], errors="coerce")
    rows = np.arange(len(df)) + 2
    bad = df["frame"].isna().to_numpy()
    if bad.any():
        raise DataError("frame index is not a number", csv, row=int(rows[bad][0]), field="frame")
    frame = df["frame"].to_numpy(np.int64)
    problems: list[str] = []
    ts = df["ts_micro"].to_numpy(np.float64) * 1e-6
    if len(ts) > 1 and not np.all(np.diff(ts) > 0):
        # Several epochs store one rounded constant: the frame index is the only clock.
        problems.append(f"ts_micro is not increasing; timestamps derived from frame / {FPS:g} fps")
        ts = np.nan_to_num(ts[0]) + frame / FPS

    video = csv.with_name(f"{epoch}_front.mkv")
    frames = None
    if video.is_file():
        count = video_frame_count(video)
        n_video = count.total
        if count.lost:  # damage in the middle: those frames are dropped, and counted
            problems.append(count.note(video))
        past = frame >= n_video
        if past.any():
            problems.append(
                f"{int(past.sum())} label rows (frames {int(frame[past].min())}–"
                f"{int(frame[past].max())}) are past the end of {video.name} "
                f"({n_video} frames); they are dropped, not paired with other frames"
            )
            keep = ~past
            frame, ts, rows, df = frame[keep], ts[keep], rows[keep], df[keep]
        if len(frame) == 0:
            raise DataError("no label rows fall inside the video", csv)
        if np.any(np.diff(frame) <= 0):
            raise DataError("frame indices are not strictly increasing", csv)
        frames = VideoFrames(video, frame)
    else:
        problems.append(f"video {video.name} is absent: signals only, frames missing")

    return assemble_drives(
        name=epoch,
        source=csv,
        format="deeptesla",
        timestamps=ts,
        signals={"steering": df["wheel"].to_numpy(np.float64)},
        units={"steering": DEG_STEERING_WHEEL},
        frames=frames,
        rows=rows,
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )


@register_reader("deeptesla", "MIT DeepTesla epochNN_front.mkv + epochNN_steering.csv", mismatch)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    drives = []
    for csv in _epochs(path):
        drives += _read_epoch(csv, opts)
    return drives
