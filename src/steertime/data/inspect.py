"""Validation summary of a recording: what `steertime inspect` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from steertime.data.drive import Drive
from steertime.data.frames import FrameError
from steertime.data.readers import GroupCount


@dataclass
class SignalStats:
    name: str
    unit: str
    to_radians: float | None
    angle_of: str | None
    min: float
    mean: float
    max: float


@dataclass
class DriveSummary:
    name: str
    frames: int
    has_frames: bool
    duration_s: float
    rate_hz: float
    signals: list[SignalStats]
    problems: list[str] = field(default_factory=list)


@dataclass
class Summary:
    path: str
    format: str
    drives: list[DriveSummary]
    # Per group of rows (a tub's sessions): records, how many have images, frames used.
    groups: list[GroupCount] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        return sum(d.frames for d in self.drives)

    @property
    def total_duration_s(self) -> float:
        return sum(d.duration_s for d in self.drives)

    @property
    def problems(self) -> list[str]:
        seen: list[str] = []
        for d in self.drives:
            seen += [p for p in d.problems if p not in seen]
        return seen


def check_frames(drive: Drive) -> list[str]:
    """Decode every frame; one problem line per frame that fails."""
    if drive.frames is None:
        return []
    return [
        f"{err} (row {int(drive.rows[i])})"
        for i, err in drive.frames.iter_frames()
        if isinstance(err, FrameError)
    ]


def summarize(
    path: str,
    format: str,
    drives: list[Drive],
    decode: bool = False,
    groups: list[GroupCount] | None = None,
) -> Summary:
    out = []
    for d in drives:
        stats = [
            SignalStats(
                k,
                d.units[k].name,
                d.units[k].to_radians,
                d.units[k].angle_of,
                float(np.min(v)),
                float(np.mean(v)),
                float(np.max(v)),
            )
            for k, v in d.signals.items()
        ]
        problems = list(d.problems) + (check_frames(d) if decode else [])
        out.append(
            DriveSummary(
                d.name, len(d), d.frames is not None, d.duration_s, d.rate_hz, stats, problems
            )
        )
    return Summary(path, format, out, list(groups or []))
