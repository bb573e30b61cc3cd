"""comma2k19 segments: `processed_log/CAN/*/{t,value}`, `global_pose/frame_times`, `video.hevc`.

CAN signals (~83 Hz) are interpolated onto the 20 fps frame times. Steering torque comes
from `steering_can_decoded.csv` (Toyota STEER_TORQUE_SENSOR) when present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.data.drive import Drive, assemble_drives, interpolate_to
from steertime.data.frames import VideoFrames, count_video_frames
from steertime.data.readers import ReadOptions, register_reader
from steertime.data.units import DEG_STEERING_WHEEL, MPS, Unit
from steertime.errors import DataError

# A frame further than this from any CAN sample has no trustworthy value.
MAX_EXTRAPOLATE_S = 0.1


def _is_segment(p: Path) -> bool:
    return (p / "global_pose" / "frame_times").is_file() and (p / "processed_log").is_dir()


def _subfolders(path: Path) -> list[Path]:
    # scandir's entries know their type: no stat per file in a folder of images
    with os.scandir(path) as it:
        return [Path(e.path) for e in it if e.is_dir()]


def _segments(path: Path) -> list[Path]:
    if _is_segment(path):
        return [path]
    if not path.is_dir():
        return []
    # A route folder holds numbered segments; a dataset chunk holds routes.
    found = [p for p in _subfolders(path) if _is_segment(p)]
    if not found:
        found = [p for route in _subfolders(path) for p in _subfolders(route) if _is_segment(p)]
    return sorted(found, key=lambda p: (p.parent.name, int(p.name) if p.name.isdigit() else 0))


def mismatch(path: Path) -> str | None:
    """None for a segment, a route holding segments, or a chunk holding routes."""
    if _segments(path):
        return None
    return "no segment (global_pose/frame_times + processed_log/) here or below"


def _load(p: Path) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load numpy array ({e})", p) from None


def _can(seg: Path, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    d = seg / "processed_log" / "CAN" / name
    if not (d / "t").is_file():
        return None
    t, v = _load(d / "t"), _load(d / "value")
    if v.ndim > 1:
        v = v[:, 0]
    if len(t) != len(v):
        raise DataError(f"{len(t)} times but {len(v)} values", d)
    return t, v


def _read_segment(seg: Path, opts: ReadOptions) -> list[Drive]:
    t_frames = _load(seg / "global_pose" / "frame_times").astype(np.float64)
    problems: list[str] = []
    signals: dict[str, np.ndarray] = {}
    units: dict[str, Unit] = {}
    for name, key, unit in (
        ("steering", "steering_angle", DEG_STEERING_WHEEL),
        ("speed", "speed", MPS),
    ):
        tv = _can(seg, key)
        if tv is None:
            problems.append(f"CAN signal {key} is absent")
            continue
        signals[name] = interpolate_to(t_frames, *tv, MAX_EXTRAPOLATE_S)
        units[name] = unit
    decoded = seg / "steering_can_decoded.csv"
    if decoded.is_file():
        df = pd.read_csv(decoded)
        if {"t_boot_s", "torque_driver_raw"} <= set(df.columns):
            df = df.dropna(subset=["torque_driver_raw"])
            signals["torque"] = interpolate_to(
                t_frames,
                df["t_boot_s"].to_numpy(),
                df["torque_driver_raw"].to_numpy(),
                MAX_EXTRAPOLATE_S,
            )
            # Raw counts of STEER_TORQUE_DRIVER; the DBC gives no N·m scale.
            units["torque"] = Unit("raw")
        else:
            problems.append(f"{decoded.name} lacks t_boot_s/torque_driver_raw columns")
    if "steering" not in signals:
        raise DataError("no steering_angle signal", seg / "processed_log" / "CAN")

    video = seg / "video.hevc"
    frames = None
    if video.is_file():
        n = count_video_frames(video)
        if n < len(t_frames):
            problems.append(
                f"video has {n} frames for {len(t_frames)} frame times; extra times dropped"
            )
            t_frames = t_frames[:n]
            signals = {k: v[:n] for k, v in signals.items()}
        frames = VideoFrames(video, np.arange(len(t_frames)))
    else:
        problems.append("video.hevc is absent: signals only, frames missing")
    return assemble_drives(
        name=f"{seg.parent.name}/{seg.name}",
        source=seg,
        format="comma2k19",
        timestamps=t_frames,
        signals=signals,
        units=units,
        frames=frames,
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )


@register_reader(
    "comma2k19", "comma2k19 segment (processed_log + global_pose + video.hevc)", mismatch
)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    drives = []
    for seg in _segments(path):
        drives += _read_segment(seg, opts)
    return drives
