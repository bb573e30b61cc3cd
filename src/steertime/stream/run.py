"""`steertime predict`: run a streaming predictor over a recording or a bare video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from steertime.atomic import atomic_file
from steertime.data import Drive, ReadOptions
from steertime.data.frames import FrameError
from steertime.data.resolve import RECORDING, VIDEO, read_source, resolve
from steertime.data.resolve import bare_video_drive as bare_video_drive  # its older home
from steertime.errors import DataError
from steertime.stream.predictor import FrameSizeError, StreamingPredictor, tell_truth


def load_source(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> list[Drive]:
    """The drives with frames of a recording or a bare video (`format='video'` forces
    the latter), as `steertime.data.resolve` finds it."""
    src = resolve(path, format, options, accept=(RECORDING, VIDEO))
    drives = [d for d in read_source(src, options).drives if d.frames is not None]
    if not drives:
        raise DataError("no drive with frames to predict on", path)
    return drives


def predict_drives(
    predictor: StreamingPredictor,
    drives: list[Drive],
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """One row per frame: drive, source row, t, status, predictions, and true_<signal>.
    An `adapt_gamma` predictor is told each frame's recorded truth after its step, so its
    spreads recalibrate online (`steertime.stream.adaptive`)."""
    rows = []
    for d in drives:
        predictor.reset()  # each drive starts like a car starting
        for i, frame in d.frames.iter_frames():
            t = float(d.timestamps[i])
            if isinstance(frame, FrameError):
                out = {"t": t, "status": "skipped", "error": str(frame)}
            else:
                try:
                    out = predictor.step(frame, t)
                except FrameSizeError as e:
                    # one odd frame must not cost the rows after it (prepare drops it too)
                    where = f"{d.frames.describe(i)} (row {int(d.rows[i])})"
                    out = {"t": t, "status": "skipped", "error": f"{where}: {e}"}
            row = {"drive": d.name, "row": int(d.rows[i]), **out}
            truth = {n: float(d.signals[n][i]) for n in predictor.layout.names if n in d.signals}
            row.update({f"true_{n}": v for n, v in truth.items()})
            if out["status"] != "skipped":
                tell_truth(predictor, truth)  # with adapt_gamma: learnt after the frame
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
