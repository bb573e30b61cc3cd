"""Readers for real driving-log formats, found by detection or chosen by name.

Each reader module registers itself with `@register_reader`, giving a `mismatch(path)`
that returns None for a path of its format and otherwise says why not. Which reader
reads a path is decided in one place only, `steertime.data.resolve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

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
    camera: str | None = None  # udacity_bag: center (default), left or right


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
    # None when the path is a recording of this format (in any of its path forms), else
    # a short reason: the resolver lists them when nothing matches.
    mismatch: Callable[[Path], str | None]
    # A reader returns its drives, or a Recording when it has more to report.
    read: Callable[[Path, ReadOptions], list[Drive] | Recording]


_READERS: dict[str, Reader] = {}


def read_csv(path: Path) -> pd.DataFrame:
    """A reader's CSV, or a DataError naming the file when it cannot be parsed (malformed,
    empty, not text)."""
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse CSV ({e})", path) from None


def read_text_rows(path: Path) -> str:
    """A text file's content, or a DataError naming the row of its first non-UTF-8 byte
    (a log saved in another encoding)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        row = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"not UTF-8 text (byte 0x{raw[e.start]:02x})", path, row=row) from None


def register_reader(name: str, description: str, mismatch: Callable[[Path], str | None]):
    def deco(fn: Callable[[Path, ReadOptions], list[Drive] | Recording]):
        _READERS[name] = Reader(name, description, mismatch, fn)
        return fn

    return deco


def readers() -> list[Reader]:
    """Every reader, in detection priority order (`_PRIORITY`, not the order modules
    happened to be imported in, so the CLI and the API detect alike)."""
    _load_all()
    rank = {name: k for k, name in enumerate(_PRIORITY)}
    return sorted(_READERS.values(), key=lambda r: rank.get(r.name, len(rank)))


def available_formats() -> dict[str, str]:
    return {r.name: r.description for r in readers()}


def detect_format(path: str | Path) -> str:
    """The format of the recording at `path` (see `steertime.data.resolve`)."""
    from steertime.data.resolve import RECORDING, resolve  # resolve builds on this registry

    return str(resolve(path, accept=(RECORDING,)).format)


def read_drives(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> list[Drive]:
    """Read every drive in `path` (format auto-detected unless given)."""
    return read_recording(path, format, options).drives


def read_recording(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> Recording:
    """Read `path` like `read_drives`, keeping the per-group counts and skipped groups."""
    from steertime.data.resolve import RECORDING, read_source, resolve

    return read_source(resolve(path, format, options, accept=(RECORDING,)), options)


_PRIORITY = (
    "comma2k19",
    "deeptesla",
    "donkey",
    "generic",
    "udacity_bag",
    "udacity_real",
    "udacity_sim",
    "lerobot",
    "udacity_bag_frames",
)


def _load_all() -> None:
    # Import for the side effect of registration.
    from steertime.data.readers import (  # noqa: F401
        comma2k19,
        deeptesla,
        donkey,
        generic,
        lerobot,
        udacity_bag,
        udacity_real,
        udacity_sim,
    )
