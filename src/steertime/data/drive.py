"""The canonical drive: one contiguous recording, whatever format it came from.

Every reader ends in `assemble_drives`, so sorting, de-duplication, non-finite
values and gap splitting are decided in one place and reported the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steertime.data.frames import FrameSource
from steertime.data.units import Unit
from steertime.errors import DataError

DEFAULT_MAX_GAP_S = 1.0


@dataclass
class Drive:
    """One contiguous recording.

    timestamps: (N,) seconds, strictly increasing.
    signals: name -> (N,) float64, aligned to the frames.
    frames: lazy source of N RGB frames, or None when the recording has no video.
    rows: (N,) the source row (or record index) of each frame, for error messages.
    """

    name: str
    source: str
    format: str
    timestamps: np.ndarray
    signals: dict[str, np.ndarray]
    units: dict[str, Unit]
    frames: FrameSource | None
    rows: np.ndarray
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def duration_s(self) -> float:
        return float(self.timestamps[-1] - self.timestamps[0]) if len(self) > 1 else 0.0

    @property
    def rate_hz(self) -> float:
        if len(self) < 2:
            return 0.0
        return float(1.0 / np.median(np.diff(self.timestamps)))

    def slice(self, idx: np.ndarray, name: str) -> Drive:
        return Drive(
            name=name,
            source=self.source,
            format=self.format,
            timestamps=self.timestamps[idx],
            signals={k: v[idx] for k, v in self.signals.items()},
            units=dict(self.units),
            frames=None if self.frames is None else self.frames.subset(idx),
            rows=self.rows[idx],
            problems=list(self.problems),
        )


def _rows_text(rows: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f" … ({len(rows)} in all)" if len(rows) > limit else "")


ABSURD = 1e9  # no steering, speed, torque or throttle reading comes near this


def assemble_drives(
    *,
    name: str,
    source: str | Path,
    format: str,
    timestamps: np.ndarray,
    signals: dict[str, np.ndarray],
    units: dict[str, Unit],
    frames: FrameSource | None,
    rows: np.ndarray | None = None,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    problems: list[str] | None = None,
    strict: bool = False,
) -> list[Drive]:
    """Validate one recording and cut it into contiguous drives.

    - non-finite timestamps or signal values: those rows are dropped (warned);
    - unsorted timestamps: rows are put in time order (warned);
    - duplicate timestamps: later duplicates are dropped (warned);
    - gaps longer than `max_gap_s` split the recording into separate drives.
    With `strict`, each of the first three is an error instead.
    """
    source = str(source)
    problems = list(problems or [])
    t = np.asarray(timestamps, dtype=np.float64)
    n = len(t)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    if n == 0:
        raise DataError("the recording has no frames", source)
    for k, v in signals.items():
        if len(v) != n:
            raise DataError(f"signal {k!r} has {len(v)} values for {n} frames", source)
    if frames is not None and len(frames) != n:
        raise DataError(f"{len(frames)} frames for {n} timestamps", source)

    def complain(msg: str, fix: str, bad_rows: np.ndarray) -> None:
        if strict:
            raise DataError(f"{msg} (rows {_rows_text(bad_rows)})", source, row=int(bad_rows[0]))
        problems.append(f"{msg}; {fix} (rows {_rows_text(bad_rows)})")

    keep = np.isfinite(t)
    if not keep.all():
        complain("non-finite timestamps", "rows dropped", rows[~keep])
    for k, v in signals.items():
        bad = keep & ~np.isfinite(v)
        if bad.any():
            complain(f"non-finite {k!r} values", "rows dropped", rows[bad])
            keep &= ~bad
        # 1e308 is finite, but its square is not: the label std, then the loss, go NaN
        huge = keep & (np.abs(np.where(np.isfinite(v), v, 0.0)) > ABSURD)
        if huge.any():
            complain(f"{k!r} values beyond ±{ABSURD:g} (not a reading)", "rows dropped", rows[huge])
            keep &= ~huge
    idx = np.flatnonzero(keep)

    order = np.argsort(t[idx], kind="stable")
    if np.any(order != np.arange(len(order))):
        moved = idx[order != np.arange(len(order))]
        complain("timestamps out of order", "rows sorted by time", rows[moved])
        idx = idx[order]
    if len(idx) > 1:
        dup = np.concatenate([[False], np.diff(t[idx]) <= 0])
        if dup.any():
            complain("duplicate timestamps", "later duplicates dropped", rows[idx[dup]])
            idx = idx[~dup]
    if len(idx) == 0:
        raise DataError("no usable rows remain after validation: " + "; ".join(problems), source)

    whole = Drive(name, source, format, t, dict(signals), dict(units), frames, rows, problems)
    kept = whole.slice(idx, name)
    cuts = np.flatnonzero(np.diff(kept.timestamps) > max_gap_s) + 1
    if len(cuts) == 0:
        return [kept]
    pieces = np.split(np.arange(len(kept)), cuts)
    gaps = ", ".join(
        f"{kept.timestamps[c] - kept.timestamps[c - 1]:.1f} s before row {int(kept.rows[c])}"
        for c in cuts
    )
    note = f"split into {len(pieces)} drives at gaps > {max_gap_s:g} s ({gaps})"
    drives = []
    for j, piece in enumerate(pieces):
        d = kept.slice(piece, f"{name}#{j}")
        d.problems.append(note)
        drives.append(d)
    return drives


def interpolate_to(
    t_frames: np.ndarray, t_signal: np.ndarray, values: np.ndarray, max_extrapolate_s: float
) -> np.ndarray:
    """Linearly interpolate a signal recorded at its own rate onto frame times.

    Frames further than `max_extrapolate_s` outside the signal's span get NaN (and are
    then dropped by `assemble_drives`) rather than a held edge value.
    """
    t_signal = np.asarray(t_signal, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(t_signal, kind="stable")
    t_signal, values = t_signal[order], values[order]
    ok = np.isfinite(t_signal) & np.isfinite(values)
    t_signal, values = t_signal[ok], values[ok]
    if len(t_signal) == 0:
        return np.full(len(t_frames), np.nan)
    out = np.interp(t_frames, t_signal, values)
    outside = (t_frames < t_signal[0] - max_extrapolate_s) | (
        t_frames > t_signal[-1] + max_extrapolate_s
    )
    out[outside] = np.nan
    return out
