"""Any log: a video file or an image folder, plus a CSV, described by a small mapping.

The mapping lives in `steertime.yaml` / `steertime.toml` beside the data, in a file given
with `--mapping`, or in `--map key=value` options (see docs/data.md):

    csv: log.csv                 # relative to the mapping file
    frames: front.mp4            # a video file, or a folder of images
    time: {column: t, unit: ms}  # s | ms | us | ns; or give `fps` instead
    frame: {column: frame}       # video frame index, or image file name in the folder
    signals:
      steering: {column: angle, unit: deg, angle_of: steering_wheel}
      speed: {column: v, unit: km/h}
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import ImageFiles, VideoFrames, keep_present, video_frame_count
from steertime.data.readers import ReadOptions, read_csv, register_reader
from steertime.data.units import MPS, Unit, angle_unit, speed_factor
from steertime.errors import DataError

MAPPING_NAMES = ("steertime.yaml", "steertime.yml", "steertime.toml")
TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_TOP_KEYS = {"csv", "frames", "time", "frame", "fps", "signals", "name"}


def _mapping_in(folder: Path) -> Path | None:
    for n in MAPPING_NAMES:
        if (folder / n).is_file():
            return folder / n
    return None


def find_mapping(path: Path) -> Path | None:
    """The mapping that describes `path`: the mapping file itself, the one in a folder,
    or, for the CSV, video or image folder it names, the one beside it."""
    if path.is_file() and path.name in MAPPING_NAMES:
        return path
    if path.is_dir() and (inside := _mapping_in(path)) is not None:
        return inside
    beside = _mapping_in(path.parent)
    return beside if beside is not None and _names(beside, path) else None


def _names(mapping: Path, path: Path) -> bool:
    try:
        m = load_mapping(mapping)
    except DataError:
        return False  # unreadable: not a match here; reading it names the problem
    # By name, links not followed: a linked copy under another name is another file.
    target = os.path.normpath(path)
    return any(
        isinstance(m.get(k), str) and os.path.normpath(mapping.parent / m[k]) == target
        for k in ("csv", "frames")
    )


def mismatch(path: Path) -> str | None:
    if find_mapping(path) is not None:
        return None
    return "no steertime.yaml in it, or beside it naming it"


def load_mapping(f: Path) -> dict:
    try:
        m = tomllib.loads(f.read_text()) if f.suffix == ".toml" else yaml.safe_load(f.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise DataError(f"cannot parse mapping ({e})", f) from None
    if not isinstance(m, dict):
        raise DataError("mapping must be a table of keys", f)
    return m


def mapping_from_pairs(pairs: list[str]) -> dict:
    """`--map` options: csv=F, frames=F, fps=N, time=COL[:UNIT], frame=COL, NAME=COL[:UNIT]."""
    m: dict = {"signals": {}}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise DataError(f"--map {pair!r}: expected KEY=VALUE")
        col, _, unit = value.partition(":")
        if key in ("csv", "frames", "name"):
            m[key] = value
        elif key == "fps":
            m["fps"] = float(value)
        elif key in ("time", "frame"):
            m[key] = {"column": col, **({"unit": unit} if unit else {})}
        else:
            m["signals"][key] = {"column": col, **({"unit": unit} if unit else {})}
    return m


def _signal_unit(name: str, spec: dict, where: str) -> tuple[Unit, float]:
    unit = str(spec.get("unit", "m/s" if name == "speed" else "unknown"))
    if name == "speed":
        return MPS, speed_factor(unit, where)
    if name == "steering":
        return angle_unit(unit, spec.get("angle_of"), spec.get("to_radians")), 1.0
    return Unit(unit), 1.0


def read_with_mapping(m: dict, base: Path, where: str, opts: ReadOptions) -> list[Drive]:
    unknown = set(m) - _TOP_KEYS
    if unknown:
        raise DataError(
            f"unknown mapping keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}", where
        )
    for key in ("csv", "frames"):
        if key not in m:
            raise DataError(f"mapping needs {key!r}", where, field=key)
    csv = (base / m["csv"]).resolve()
    frames_path = (base / m["frames"]).resolve()
    if not csv.is_file():
        raise DataError("CSV named by the mapping is missing", csv)
    if not frames_path.exists():
        raise DataError("frames named by the mapping are missing", frames_path)
    df = read_csv(csv)
    rows = np.arange(len(df)) + 2

    def column(spec: dict | None, field: str) -> pd.Series:
        if not isinstance(spec, dict) or "column" not in spec:
            raise DataError("needs a {column: ...} entry", where, field=field)
        if spec["column"] not in df.columns:
            raise DataError(
                f"column {spec['column']!r} not in CSV (has {list(df.columns)})", csv, field=field
            )
        return df[spec["column"]]

    def numeric(s: pd.Series, field: str) -> np.ndarray:
        v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
        bad = np.isnan(v) & s.notna().to_numpy()
        if bad.any():
            r = int(rows[bad][0])
            raise DataError(
                f"not a number: {s.iloc[int(np.argmax(bad))]!r}", csv, row=r, field=field
            )
        return v

    if "time" in m:
        unit = m["time"].get("unit", "s")
        if unit not in TIME_SCALE:
            raise DataError(
                f"time unit {unit!r} not one of {list(TIME_SCALE)}", where, field="time"
            )
        t = numeric(column(m["time"], "time"), "time") * TIME_SCALE[unit]
    elif "fps" in m:
        t = None
    else:
        raise DataError("mapping needs 'time' (a column) or 'fps'", where)

    problems: list[str] = []
    if frames_path.is_dir():
        names = column(m.get("frame"), "frame").astype(str)
        paths = [(frames_path / n).resolve() for n in names]
        for p, r in zip(paths, rows, strict=True):
            if not p.is_relative_to(frames_path):
                raise DataError("image path escapes the frames folder; refused", csv, row=int(r))
        keep = keep_present(
            [p.is_file() for p in paths], [str(r) for r in rows], csv, opts.strict, problems
        )
        frame_index = np.arange(len(df))
        source = None
    else:
        count = video_frame_count(frames_path)
        n_video = count.total
        if count.lost:  # damage in the middle: those frames are dropped, and counted
            problems.append(count.note(frames_path))
        frame_index = (
            numeric(column(m["frame"], "frame"), "frame").astype(np.int64)
            if "frame" in m
            else np.arange(len(df))
        )
        keep = frame_index < n_video
        if not keep.all():
            problems.append(
                f"{int((~keep).sum())} rows are past the end of {frames_path.name} "
                f"({n_video} frames); dropped"
            )
        if n_video > keep.sum():
            problems.append(f"{n_video - int(keep.sum())} video frames have no CSV row; unused")
        source = frames_path
    if t is None:
        t = frame_index / float(m["fps"])

    signals, units = {}, {}
    for name, spec in (m.get("signals") or {}).items():
        unit, factor = _signal_unit(name, spec, where)
        signals[name] = numeric(column(spec, name), name) * factor
        units[name] = unit
    if "steering" not in signals:
        raise DataError("mapping has no 'steering' signal", where, field="signals")

    idx = np.flatnonzero(keep)
    if source is None:
        frames = ImageFiles([paths[i] for i in idx])
    else:
        order = np.argsort(frame_index[idx], kind="stable")
        if np.any(np.diff(frame_index[idx][order]) <= 0):
            raise DataError("frame indices repeat", csv, field="frame")
        idx = idx[order]
        frames = VideoFrames(source, frame_index[idx])
    return assemble_drives(
        name=str(m.get("name", csv.stem)),
        source=csv,
        format="generic",
        timestamps=t[idx],
        signals={k: v[idx] for k, v in signals.items()},
        units=units,
        frames=frames,
        rows=rows[idx],
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )


@register_reader(
    "generic", "video or image folder + CSV, described by steertime.yaml or --map", mismatch
)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    if opts.mapping is not None:
        base = path if path.is_dir() else path.parent
        return read_with_mapping(opts.mapping, base, "--map/--mapping", opts)
    f = find_mapping(path)
    if f is None:
        raise DataError(f"no mapping file ({' / '.join(MAPPING_NAMES)}) and no --map given", path)
    return read_with_mapping(load_mapping(f), f.parent, str(f), opts)
