"""Udacity simulator `driving_log.csv` + `IMG/` (headerless, timestamps in file names)."""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath

import numpy as np

from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import ImageFiles, keep_present
from steertime.data.readers import ReadOptions, read_text_rows, register_reader
from steertime.data.units import FRACTION, MPS, ROAD_WHEEL, SPEED_TO_MPS, Unit
from steertime.errors import DataError

COLUMNS = ["center", "left", "right", "steering", "throttle", "brake", "speed"]
# The simulator scales steering in [-1, 1] to ±25 degrees of road-wheel angle.
STEERING = Unit("normalized", math.radians(25.0), ROAD_WHEEL)
_STAMP = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{3})")


def _log_file(path: Path) -> Path:
    return path / "driving_log.csv" if path.is_dir() else path


def mismatch(path: Path) -> str | None:
    """None for the folder holding driving_log.csv, or that file; else why not."""
    log = _log_file(path)
    if log.name != "driving_log.csv" or not log.is_file():
        return "no driving_log.csv"
    with open(log, newline="", errors="replace") as f:
        first = f.readline().split(",")
    if len(first) != 7 or first[0].strip().lower() == "center":
        return "driving_log.csv is not the simulator's 7 headerless columns"
    return None


def timestamp_from_name(name: str) -> float:
    m = _STAMP.search(name)
    if not m:
        raise ValueError(f"no YYYY_MM_DD_HH_MM_SS_mmm timestamp in {name!r}")
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC).timestamp()


def _local(img_dir: Path, recorded: str) -> Path:
    # Logs hold absolute paths of the recording machine (often Windows): keep the name only.
    name = PureWindowsPath(recorded.strip()).name
    return img_dir / name


@register_reader("udacity_sim", "Udacity simulator driving_log.csv + IMG/", mismatch)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    log = _log_file(path)
    img_dir = log.parent / "IMG"
    if not img_dir.is_dir():
        raise DataError("the IMG/ folder next to driving_log.csv is missing", img_dir)
    present = {p.name for p in img_dir.iterdir()}
    times, paths, rows, values = [], [], [], {k: [] for k in COLUMNS[3:]}
    missing_center, missing_side = [], 0
    with io.StringIO(read_text_rows(log), newline="") as f:
        for r, rec in enumerate(csv.reader(f)):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) != 7:
                raise DataError(f"expected 7 columns, found {len(rec)}", log, row=r + 1)
            center = _local(img_dir, rec[0])
            if center.name not in present:
                missing_center.append(r + 1)
                continue
            missing_side += sum(_local(img_dir, c).name not in present for c in rec[1:3] if c)
            try:
                times.append(timestamp_from_name(center.name))
            except ValueError as e:
                raise DataError(str(e), log, row=r + 1, field="center") from None
            for k, cell in zip(COLUMNS[3:], rec[3:], strict=True):
                try:
                    values[k].append(float(cell))
                except ValueError:
                    raise DataError(f"not a number: {cell!r}", log, row=r + 1, field=k) from None
            paths.append(center)
            rows.append(r + 1)
    problems: list[str] = []
    # Rows were read in order: mark each row present or not for the shared rule.
    labels = sorted([*rows, *missing_center])
    absent = set(missing_center)
    present = [r not in absent for r in labels]
    keep_present(present, [str(r) for r in labels], log, opts.strict, problems)
    if missing_side:
        problems.append(
            f"side-camera images are absent ({missing_side} left/right files); "
            "using the center camera only"
        )
    if not paths:
        raise DataError("no rows", log)
    signals = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    signals["speed"] = signals["speed"] * SPEED_TO_MPS["mph"]
    return assemble_drives(
        name=log.parent.name,
        source=log,
        format="udacity_sim",
        timestamps=np.asarray(times),
        signals=signals,
        units={"steering": STEERING, "throttle": FRACTION, "brake": FRACTION, "speed": MPS},
        frames=ImageFiles(paths),
        rows=np.asarray(rows),
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )
