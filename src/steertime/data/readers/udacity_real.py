"""Udacity real-car logs as dumped by udacity-driving-reader: `interpolated.csv` + images.

One row per camera frame (center, left and right cameras interleaved), timestamps in
nanoseconds, `angle` in radians of steering-wheel angle, `torque` in N·m, `speed` in m/s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import ImageFiles, keep_present
from steertime.data.readers import ReadOptions, read_csv, register_reader
from steertime.data.units import MPS, RAD_STEERING_WHEEL, Unit
from steertime.errors import DataError

REQUIRED = ["timestamp", "frame_id", "filename", "angle", "torque", "speed"]
CAMERA = "center_camera"


def _csv(path: Path) -> Path:
    return path / "interpolated.csv" if path.is_dir() else path


def mismatch(path: Path) -> str | None:
    """None for the folder holding interpolated.csv, or that file; else why not."""
    f = _csv(path)
    if f.name != "interpolated.csv" or not f.is_file():
        return "no interpolated.csv"
    with open(f, errors="replace") as fh:
        header = fh.readline().strip().split(",")
    missing = [c for c in REQUIRED if c not in header]
    return f"interpolated.csv lacks columns {missing}" if missing else None


@register_reader("udacity_real", "Udacity real-car interpolated.csv + camera folders", mismatch)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    f = _csv(path)
    df = read_csv(f)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"missing columns {missing}", f)
    df["_row"] = np.arange(len(df)) + 2  # 1-based, after the header
    cams = sorted(df["frame_id"].astype(str).unique())
    df = df[df["frame_id"] == CAMERA]
    if df.empty:
        raise DataError(f"no {CAMERA} rows (cameras present: {cams})", f)
    problems = []
    side = [c for c in cams if c != CAMERA]
    if side:
        problems.append(f"using {CAMERA}; rows of {', '.join(side)} are ignored")
    paths = [f.parent / str(p) for p in df["filename"]]
    base = f.parent.resolve()
    for p, r in zip(paths, df["_row"], strict=True):
        if not p.resolve().is_relative_to(base):
            raise DataError("image path escapes the log folder; refused", f, row=int(r))
    labels = [str(r) for r in df["_row"]]
    exists = keep_present([p.is_file() for p in paths], labels, f, opts.strict, problems)
    df = df[exists]
    paths = [p for p, e in zip(paths, exists, strict=True) if e]

    def num(col: str) -> np.ndarray:
        try:
            return pd.to_numeric(df[col], errors="raise").to_numpy(np.float64)
        except (ValueError, TypeError) as e:
            raise DataError(f"non-numeric value ({e})", f, field=col) from None

    t = num("timestamp") * 1e-9
    return assemble_drives(
        name=f.parent.name,
        source=f,
        format="udacity_real",
        timestamps=t,
        signals={"steering": num("angle"), "torque": num("torque"), "speed": num("speed")},
        units={"steering": RAD_STEERING_WHEEL, "torque": Unit("N*m"), "speed": MPS},
        frames=ImageFiles(paths),
        rows=df["_row"].to_numpy(),
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )
