"""`steertime predict`: run a streaming predictor over a recording or a bare video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.atomic import atomic_file
from steertime.data import Drive, ReadOptions, read_drives
from steertime.data.frames import FrameError, VideoFrames, count_video_frames
from steertime.errors import DataError
from steertime.stream.predictor import StreamingPredictor

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".hevc", ".h264", ".webm"}


def bare_video_drive(path: Path) -> Drive:
    """A video with no labels: timestamps from its frame rate."""
    import av

    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
    fps = float(rate) if rate else 30.0
    n = count_video_frames(path)
    if n == 0:
        raise DataError("video has no frames", path)
    return Drive(
        name=path.stem,
        source=str(path),
        format="video",
        timestamps=np.arange(n) / fps,
        signals={},
        units={},
        frames=VideoFrames(path, np.arange(n)),
        rows=np.arange(n),
    )


def load_source(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> list[Drive]:
    path = Path(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and format in (None, "video"):
        return [bare_video_drive(path)]
    drives = [d for d in read_drives(path, format, options) if d.frames is not None]
    if not drives:
        raise DataError("no drive with frames to predict on", path)
    return drives


def predict_drives(
    predictor: StreamingPredictor,
    drives: list[Drive],
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """One row per frame: drive, source row, t, status, predictions, and true_<signal>."""
    rows = []
    for d in drives:
        predictor.reset()  # each drive starts like a car starting
        for i, frame in d.frames.iter_frames():
            t = float(d.timestamps[i])
            if isinstance(frame, FrameError):
                out = {"t": t, "status": "skipped", "error": str(frame)}
            else:
                out = predictor.step(frame, t)
            row = {"drive": d.name, "row": int(d.rows[i]), **out}
            for name in predictor.layout.names:
                if name in d.signals:
                    row[f"true_{name}"] = float(d.signals[name][i])
            rows.append(row)
            if progress:
                progress(1)
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    with atomic_file(out) as f:
        if out.suffix == ".parquet":
            df.to_parquet(f, index=False)
        else:
            f.write(df.to_csv(index=False).encode())
    return out
