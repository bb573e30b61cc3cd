"""What is at this path? A prepared cache, a recording of some format, or a bare video.

Every command that takes a path asks `resolve` and nothing else, so a recording is read
the same whichever of its path forms a user types (docs/data.md lists them). A cache is
known by the `steertime_cache` key in its manifest, never by the file name alone: a
Donkeycar tub has a `manifest.json` too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from steertime.data.cache import is_cache
from steertime.data.drive import Drive
from steertime.data.frames import VideoFrames, video_frame_count
from steertime.data.readers import ReadOptions, Recording, readers
from steertime.errors import DataError

Kind = Literal["cache", "recording", "video"]
CACHE: Kind = "cache"
RECORDING: Kind = "recording"
VIDEO: Kind = "video"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".hevc", ".h264", ".webm"}
_ANY: tuple[Kind, ...] = (CACHE, RECORDING, VIDEO)


@dataclass(frozen=True)
class Source:
    """A resolved path: its kind, and for a recording the reader that reads it."""

    kind: Kind
    path: Path  # as given; for a cache, its folder
    format: str | None = None  # the reader ('video' for a bare video; None for a cache)


def resolve(
    path: str | Path,
    format: str | None = None,
    options: ReadOptions | None = None,
    accept: Collection[Kind] = _ANY,
) -> Source:
    """The one place a path becomes a cache, a recording of format F or a bare video.

    `format` skips detection (a reader name, or 'video'); a mapping in `options` means the
    generic reader. A kind the caller cannot use, or a path that matches nothing, is a
    `DataError` naming the path (for no match: every format tried and why it did not fit).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("path does not exist", path)
    if format is None and is_cache(path):
        return _accepted(Source(CACHE, path if path.is_dir() else path.parent), accept)
    if format is None and options is not None and options.mapping is not None:
        format = "generic"  # --map/--mapping only mean something to the generic reader
    if format is not None:
        known = [r.name for r in readers()] + [VIDEO]
        if format not in known:
            raise DataError(f"unknown format {format!r}; known: {', '.join(sorted(known))}", path)
        kind: Kind = VIDEO if format == VIDEO else RECORDING
        return _accepted(Source(kind, path, format), accept)
    if path.is_dir() and not any(path.iterdir()):
        raise DataError("folder is empty", path)
    why: dict[str, str] = {CACHE: "no manifest.json with a steertime_cache key"}
    for r in readers():
        reason = r.mismatch(path)
        if reason is None:
            return _accepted(Source(RECORDING, path, r.name), accept)
        why[r.name] = reason
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _accepted(Source(VIDEO, path, VIDEO), accept)
    why[VIDEO] = "not a video file"
    tried = "; ".join(f"{k}: {v}" for k, v in why.items())
    raise DataError(
        f"unknown format: nothing recognises it ({tried}); choose one with --format, "
        "or describe your own log with a steertime.yaml for the generic reader",
        path,
    )


def _accepted(src: Source, accept: Collection[Kind]) -> Source:
    if src.kind not in accept:
        raise _refusal(src)
    return src


def _refusal(src: Source) -> DataError:
    """Why a command that cannot use this kind of source refuses it."""
    if src.kind == CACHE:
        return DataError(
            "this is a prepared steertime cache (frames already resized for training), not "
            "a recording: give the recording it was prepared from",
            src.path,
        )
    if src.kind == VIDEO:
        return DataError(
            "a video without labels: name it and its CSV in a steertime.yaml beside it, or "
            "give --format generic --map csv=... (docs/data.md)",
            src.path,
        )
    return DataError(
        f"this is a {src.format} recording, not a prepared cache: run "
        f"`steertime prepare {src.path} --out CACHE` first",
        src.path,
    )


def read_source(src: Source, options: ReadOptions | None = None) -> Recording:
    """Read a resolved recording or bare video (a cache is opened with `Cache.open`)."""
    if src.kind == VIDEO:
        return Recording([bare_video_drive(src.path)])
    if src.kind != RECORDING or src.format is None:
        raise DataError("a prepared cache is not read as a recording", src.path)
    reader = next(r for r in readers() if r.name == src.format)
    rec = reader.read(src.path, options or ReadOptions())
    if not isinstance(rec, Recording):
        rec = Recording(rec)
    if not rec.drives:
        raise DataError(f"no drives found by the {src.format} reader", src.path)
    return rec


def not_a_cache(path: str | Path) -> DataError:
    """The error for a path given where a cache is needed, saying what it is instead."""
    try:
        src = resolve(path)
    except DataError as e:
        if not Path(path).exists():
            return e
        return DataError("not a steertime cache; run `steertime prepare` first", path)
    return _refusal(src)


def bare_video_drive(path: str | Path) -> Drive:
    """A video with no labels: timestamps from its frame rate."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
    except (av.error.FFmpegError, IndexError) as e:
        raise DataError(f"video cannot be read ({e})", path) from None
    fps = float(rate) if rate else 30.0
    count = video_frame_count(path)
    n = count.total
    if n == 0:
        raise DataError("video has no frames", path)
    return Drive(
        name=path.stem,
        source=str(path),
        format=VIDEO,
        timestamps=np.arange(n) / fps,
        signals={},
        units={},
        frames=VideoFrames(path, np.arange(n)),
        rows=np.arange(n),
        problems=[count.note(path)] if count.lost else [],
    )
