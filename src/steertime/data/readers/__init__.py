"""Readers for real driving-log formats, found by `detect` or chosen by name.

Each reader module registers itself with `@register_reader`; `read_drives(path)` picks
the one whose `detect` accepts the path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from steertime.data.drive import DEFAULT_MAX_GAP_S, Drive
from steertime.errors import DataError


@dataclass(frozen=True)
class ReadOptions:
    max_gap_s: float = DEFAULT_MAX_GAP_S
    strict: bool = False
    mapping: dict | None = None  # generic format: the column mapping
    # Keep frames an autopilot drove (Donkeycar `user/mode` local/local_angle): their
    # `user/*` values are not a human's label, so they are skipped by default.
    keep_pilot: bool = False


@dataclass(frozen=True)
class GroupCount:
    """One group of a recording (a Donkeycar session): what it holds and what is used."""

    name: str
    records: int  # records read (not marked deleted)
    with_images: int  # of those, records whose image file is present
    frames: int  # frames that reached a drive (after every skip and validation)


@dataclass
class Recording:
    """What a reader found: the drives, plus, for readers that group rows, each group's
    counts and the groups left out whole (what `inspect` and `prepare` report)."""

    drives: list[Drive]
    groups: list[GroupCount] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reader:
    name: str
    description: str
    detect: Callable[[Path], bool]
    # A reader returns its drives, or a Recording when it has more to report.
    read: Callable[[Path, ReadOptions], list[Drive] | Recording]


_READERS: dict[str, Reader] = {}


def register_reader(name: str, description: str, detect: Callable[[Path], bool]):
    def deco(fn: Callable[[Path, ReadOptions], list[Drive] | Recording]):
        _READERS[name] = Reader(name, description, detect, fn)
        return fn

    return deco


def available_formats() -> dict[str, str]:
    _load_all()
    return {r.name: r.description for r in _READERS.values()}


def detect_format(path: str | Path) -> str:
    _load_all()
    path = Path(path)
    if not path.exists():
        raise DataError("path does not exist", path)
    if path.is_dir() and not any(path.iterdir()):
        raise DataError("folder is empty", path)
    hits = [r.name for r in _READERS.values() if r.detect(path)]
    if not hits:
        raise DataError(
            "unknown format: none of the readers recognise it "
            f"(known formats: {', '.join(sorted(_READERS))}; choose one with --format, "
            "or describe your own log with a steertime.yaml for the generic reader)",
            path,
        )
    return hits[0]


def read_drives(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> list[Drive]:
    """Read every drive in `path` (format auto-detected unless given)."""
    return read_recording(path, format, options).drives


def read_recording(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> Recording:
    """Read `path` like `read_drives`, keeping the per-group counts and skipped groups."""
    _load_all()
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in _READERS:
        raise DataError(f"unknown format {fmt!r}; known: {', '.join(sorted(_READERS))}", path)
    if not path.exists():
        raise DataError("path does not exist", path)
    rec = _READERS[fmt].read(path, options or ReadOptions())
    if not isinstance(rec, Recording):
        rec = Recording(rec)
    if not rec.drives:
        raise DataError(f"no drives found by the {fmt} reader", path)
    return rec


def _load_all() -> None:
    # Import for the side effect of registration; order is detection priority.
    from steertime.data.readers import (  # noqa: F401
        comma2k19,
        deeptesla,
        donkey,
        generic,
        udacity_real,
        udacity_sim,
    )
