"""Data in: readers for real driving-log formats, the canonical Drive, the prepared cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steertime.data.cache import Cache, CachedDrive, PrepareConfig, prepare_drives
from steertime.data.drive import Drive
from steertime.data.inspect import Summary, summarize
from steertime.data.preprocess import FrameSpec
from steertime.data.readers import (
    GroupCount,
    ReadOptions,
    Recording,
    available_formats,
    detect_format,
    read_drives,
    read_recording,
)
from steertime.data.resolve import Source, read_source, resolve
from steertime.data.splits import Segment, SplitConfig

__all__ = [
    "Cache",
    "CachedDrive",
    "Drive",
    "FrameSpec",
    "GroupCount",
    "PrepareConfig",
    "ReadOptions",
    "Recording",
    "Segment",
    "Source",
    "SplitConfig",
    "Summary",
    "available_formats",
    "detect_format",
    "inspect",
    "prepare",
    "prepare_drives",
    "read_drives",
    "read_recording",
    "read_source",
    "resolve",
]


def inspect(
    path: str | Path,
    format: str | None = None,
    options: ReadOptions | None = None,
    decode: bool = False,
) -> Summary:
    """Read a recording (or a bare video) and summarise it (decode=True also decodes
    every frame)."""
    src = resolve(path, format, options, accept=("recording", "video"))
    rec = read_source(src, options)
    return summarize(str(path), str(src.format), rec.drives, decode=decode, groups=rec.groups)


def prepare(
    path: str | Path,
    out: str | Path,
    cfg: PrepareConfig | None = None,
    format: str | None = None,
    options: ReadOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Cache:
    """Read a recording in any supported format and write a prepared cache."""
    rec = read_recording(path, format, options)
    return prepare_drives(
        rec.drives,
        out,
        cfg,
        source=str(path),
        overwrite=overwrite,
        progress=progress,
        skipped=rec.skipped,
    )
