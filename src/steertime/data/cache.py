"""The prepared cache: frames decoded once to model size, stored for fast random access.

Layout (one folder per cache, built in a temporary sibling and renamed into place):

    CACHE/manifest.json             source, format, units, frame spec, splits, content hash
    CACHE/drives/NNN/frames.npy     (N, H, W, 3) uint8 RGB; np.load(..., mmap_mode="r") works
    CACHE/drives/NNN/signals.parquet  t (s), source row, one column per signal

Reads use positional reads (`os.preadv`) into a caller's buffer rather than a mapping, so
iterating a cache far larger than RAM keeps the process's RSS flat.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from steertime import __version__
from steertime.atomic import atomic_dir, write_json
from steertime.data.drive import Drive
from steertime.data.frames import FrameError
from steertime.data.preprocess import (
    FrameSizeMismatch,
    FrameSpec,
    native_size,
    parse_size,
    spec_for_size,
    squash_warning,
)
from steertime.data.splits import (
    Segment,
    SplitConfig,
    make_splits,
    refuse_empty_train,
    session_of,
)
from steertime.data.units import Unit
from steertime.errors import DataError, SteertimeError

CACHE_VERSION = 1
MARKER = "steertime_cache"  # the manifest key that makes a folder a cache
NPY_HEADER = 128  # bytes; numpy pads a v1.0 header for our shapes to exactly this


@dataclass(frozen=True)
class PrepareConfig:
    frame: FrameSpec = field(default_factory=FrameSpec)
    fps: float | None = None  # resample to at most this rate (None: keep every frame)
    workers: int = 2
    skip_bad_frames: bool = True  # False: a frame that fails to decode is an error
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise SteertimeError(f"fps must be a finite number > 0, got {self.fps}")
        if self.workers < 0:
            raise SteertimeError(f"workers must be >= 0, got {self.workers}")


def _npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    head = buf.getvalue()
    if len(head) != NPY_HEADER:
        raise SteertimeError(f"unexpected npy header size {len(head)} for shape {shape}")
    return head


def _resample_indices(t: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the first frame at or after each tick of 1/fps (downsampling only)."""
    ticks = np.arange(t[0], t[-1] + 1e-9, 1.0 / fps)
    idx = np.unique(np.searchsorted(t, ticks - 1e-6))
    return idx[idx < len(t)]


def _decoded(
    drive: Drive, spec: FrameSpec, workers: int, seen: dict
) -> Iterator[tuple[int, object]]:
    """Preprocessed frames in order (or the FrameError of a bad one).

    Image files are decoded and resized by a thread pool (PIL releases the GIL); videos
    decode forward in this thread.
    """
    src = drive.frames

    def one(i: int, frame) -> np.ndarray | FrameError:
        if isinstance(frame, FrameError):
            return frame
        h, w = int(frame.shape[0]), int(frame.shape[1])
        ref = seen.setdefault("source_size", [h, w]) if h and w else None
        # the rule `predict` follows too: rescale a same-aspect frame, skip another aspect
        try:
            fitted = spec_for_size(spec, frame.shape[:2], ref)
        except FrameSizeMismatch as e:
            return FrameError(f"{src.describe(i)}: {e}; dropped")
        return fitted.apply(frame, src.describe(i))

    # A source read forward that decodes in its own threads (ROS bags) runs the resize
    # there too, beside the decode, rather than in this thread.
    mapped = getattr(src, "iter_mapped", None)
    if mapped is not None and workers > 1:
        yield from mapped(one, workers)
        return
    load = getattr(src, "load", None)
    if load is None or workers <= 1:
        for i, frame in src.iter_frames():
            yield i, one(i, frame)
        return

    def safe(i: int) -> np.ndarray | FrameError:
        try:
            return one(i, load(i))
        except FrameError as e:
            return e

    chunk = 64 * workers  # bounded look-ahead keeps memory flat
    with ThreadPoolExecutor(workers) as pool:
        for lo in range(0, len(src), chunk):
            idx = range(lo, min(lo + chunk, len(src)))
            yield from zip(idx, pool.map(safe, idx), strict=True)


def first_frame_size(drives: Iterable[Drive]) -> tuple[int, int] | None:
    """(height, width) of the first decodable frame of the first drive with frames: the
    camera's size, which `prepare --size native` keeps and the squash warning checks."""
    for d in drives:
        if d.frames is None:
            continue
        for _, frame in d.frames.iter_frames():
            if not isinstance(frame, FrameError):
                return int(frame.shape[0]), int(frame.shape[1])
    return None


def frame_spec_for(
    drives: list[Drive], size: str, crop_top: int = 0, crop_bottom: int = 0
) -> tuple[FrameSpec, str]:
    """The FrameSpec of `prepare --size SIZE` ('HxW' or 'native': the camera's frame after
    the crop, not resampled) and a warning when it squashes the frames ('' if not)."""
    source = first_frame_size(drives)
    if size.strip().lower() == "native":
        if source is None:
            raise DataError("--size native: no decodable frame to take the size from")
        h, w = native_size(source, crop_top, crop_bottom)
    else:
        h, w = parse_size(size)
    spec = FrameSpec(h, w, crop_top, crop_bottom)
    return spec, squash_warning(source, spec)


def _write_drive(
    drive: Drive,
    folder: Path,
    cfg: PrepareConfig,
    hasher,
    on_frame: Callable[[int], None],
) -> dict:
    spec = cfg.frame
    folder.mkdir(parents=True)
    kept: list[int] = []
    problems = list(drive.problems)
    frame_bytes = spec.height * spec.width * 3
    seen: dict = {}
    with open(folder / "frames.npy", "wb") as f:
        f.write(b"\0" * NPY_HEADER)
        for i, frame in _decoded(drive, spec, cfg.workers, seen):
            on_frame(1)
            if isinstance(frame, FrameError):
                if not cfg.skip_bad_frames:
                    raise DataError(f"{frame} (row {int(drive.rows[i])})")
                problems.append(f"frame dropped: {frame} (row {int(drive.rows[i])})")
                continue
            data = frame.tobytes()
            assert len(data) == frame_bytes
            f.write(data)
            hasher.update(data)
            kept.append(i)
        if not kept:
            raise DataError("no frame of this drive could be decoded", drive.source)
        f.seek(0)
        f.write(_npy_header((len(kept), spec.height, spec.width, 3)))
    idx = np.asarray(kept)
    table = pd.DataFrame({"t": drive.timestamps[idx], "row": drive.rows[idx]})
    for k, v in drive.signals.items():
        table[k] = v[idx]
    table.to_parquet(folder / "signals.parquet", index=False)
    hasher.update(table.to_numpy(np.float64).tobytes())
    t = drive.timestamps[idx]
    return {
        "name": drive.name,
        "dir": folder.name,
        "source": drive.source,
        "format": drive.format,
        "frames": len(kept),
        "source_size": seen.get("source_size"),  # raw camera frame (height, width)
        "t0": float(t[0]),
        "duration_s": float(t[-1] - t[0]),
        "rate_hz": float(1 / np.median(np.diff(t))) if len(t) > 1 else 0.0,
        "units": {k: u.to_dict() for k, u in drive.units.items()},
        "problems": problems,
    }


def prepare_drives(
    drives: Iterable[Drive],
    out: str | Path,
    cfg: PrepareConfig | None = None,
    *,
    source: str = "",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    skipped: Iterable[str] = (),
) -> Cache:
    """Decode, crop and resize every frame once and write a cache atomically.

    `skipped` names what the reader left out whole (a tub's image-less sessions): it is
    recorded in the manifest beside the drives skipped here."""
    cfg = cfg or PrepareConfig()
    out = Path(out)
    drives = list(drives)
    usable = [d for d in drives if d.frames is not None]
    skipped = [*skipped] + [
        f"{d.name}: no frames (signals only), not cached" for d in drives if d.frames is None
    ]
    if not usable:
        raise DataError(
            "no drive has frames; nothing to prepare (" + "; ".join(skipped) + ")", source
        )
    _refuse_inside_sources(out, source, usable)
    if cfg.fps is not None:
        usable = [d.slice(_resample_indices(d.timestamps, cfg.fps), d.name) for d in usable]
    hasher = hashlib.blake2b(digest_size=16)
    started = time.time()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "drives").mkdir()
        entries = [
            _write_drive(d, tmp / "drives" / f"{k:03d}", cfg, hasher, progress or (lambda n: None))
            for k, d in enumerate(usable)
        ]
        for e in entries:
            e["dir"] = f"drives/{e['dir']}"
        manifest = {
            MARKER: CACHE_VERSION,
            "steertime_version": __version__,
            "created_unix": started,
            "source": source,
            "formats": sorted({d.format for d in usable}),
            "frame": cfg.frame.to_dict(),
            "fps": cfg.fps,
            "content_hash": hasher.hexdigest(),
            "drives": entries,
            "skipped": skipped,
        }
        manifest["splits"] = _split_entry(
            [e["frames"] for e in entries], cfg.split, [e["name"] for e in entries]
        )
        write_json(tmp / "manifest.json", manifest)
    return Cache.open(out)


def _refuse_inside_sources(out: Path, source: str, drives: list[Drive]) -> None:
    """Source data is never written to: neither the folder the user named nor a drive's
    own folder (a path naming a file, such as driving_log.csv, stands for its folder)."""
    named = [Path(source)] if source else []
    named += [Path(d.source) for d in drives if d.source and Path(d.source).exists()]
    target = out.resolve()
    for p in named:
        folder = p.resolve() if p.is_dir() else p.resolve().parent
        if target == folder or target.is_relative_to(folder):
            raise SteertimeError(
                f"refusing to write the cache {out} inside the source folder {folder}"
            )


def is_cache(path: str | Path) -> bool:
    """A cache folder (or its manifest.json): known by its marker key, not the file name,
    which Donkeycar tubs share."""
    path = Path(path)
    mf = path / "manifest.json" if path.is_dir() else path
    if mf.name != "manifest.json" or not mf.is_file():
        return False
    try:
        text = mf.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError:
        # A damaged cache manifest still begins with its marker (written first): treat it
        # as a cache, so `Cache.open` says what is wrong with it.
        return text.lstrip().startswith("{") and f'"{MARKER}"' in text[:200]
    return isinstance(manifest, dict) and MARKER in manifest


def _split_entry(lengths: list[int], cfg: SplitConfig, names: list[str]) -> dict:
    segs = refuse_empty_train(make_splits(lengths, cfg, names), lengths, cfg)
    return {
        "config": cfg.to_dict(),
        "segments": [[s.drive, s.split, s.start, s.stop] for s in segs],
    }


@dataclass
class CachedDrive:
    """One drive in a cache: signals in memory, frames read on demand."""

    name: str
    path: Path
    n: int
    height: int
    width: int
    timestamps: np.ndarray
    rows: np.ndarray
    signals: dict[str, np.ndarray]
    units: dict[str, Unit]
    problems: list[str]
    _fd: int | None = None

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 3

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path / "frames.npy", os.O_RDONLY)
        return self._fd

    def read_frames(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames [start, stop) as (T, H, W, 3) uint8, read with one positional read."""
        if not 0 <= start <= stop <= self.n:
            raise IndexError(f"frames [{start}, {stop}) outside drive {self.name} of {self.n}")
        shape = (stop - start, self.height, self.width, 3)
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 array of shape {shape}")
        want = out.nbytes
        got = os.preadv(
            self._file(), [memoryview(out).cast("B")], NPY_HEADER + start * self.frame_bytes
        )
        if got != want:
            raise DataError(
                f"short read ({got} of {want} bytes): cache file truncated?",
                self.path / "frames.npy",
            )
        return out

    def frames_mmap(self) -> np.ndarray:
        """The whole frame array as a read-only memory map (convenient, but grows RSS)."""
        return np.load(self.path / "frames.npy", mmap_mode="r")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self) -> dict:
        # File descriptors do not travel to DataLoader workers; each reopens its own.
        return {**self.__dict__, "_fd": None}


class Cache:
    """A prepared cache, opened read-only."""

    def __init__(self, path: Path, manifest: dict, drives: list[CachedDrive]) -> None:
        self.path, self.manifest, self.drives = path, manifest, drives
        self.frame = FrameSpec.from_dict(manifest["frame"])

    @classmethod
    def open(cls, path: str | Path) -> Cache:
        path = Path(path)
        if not is_cache(path):
            from steertime.data.resolve import not_a_cache  # resolve builds on this module

            raise not_a_cache(path)
        if not path.is_dir():  # the cache's own manifest.json
            path = path.parent
        mf = path / "manifest.json"
        try:
            manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"manifest is not valid JSON ({e})", mf) from None
        if manifest.get(MARKER) != CACHE_VERSION:
            raise DataError(f"cache version {manifest.get(MARKER)} is not {CACHE_VERSION}", mf)
        h, w = manifest["frame"]["height"], manifest["frame"]["width"]
        drives = []
        for e in manifest["drives"]:
            d = path / e["dir"]
            table = pd.read_parquet(d / "signals.parquet")
            size = (d / "frames.npy").stat().st_size
            if size != NPY_HEADER + e["frames"] * h * w * 3:
                raise DataError(f"frames.npy has {size} bytes, expected {e['frames']} frames", d)
            sig = [c for c in table.columns if c not in ("t", "row")]
            drives.append(
                CachedDrive(
                    name=e["name"],
                    path=d,
                    n=e["frames"],
                    height=h,
                    width=w,
                    timestamps=table["t"].to_numpy(),
                    rows=table["row"].to_numpy(),
                    signals={k: table[k].to_numpy(np.float64) for k in sig},
                    units={k: Unit.from_dict(u) for k, u in e["units"].items()},
                    problems=e.get("problems", []),
                )
            )
        return cls(path, manifest, drives)

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def n_frames(self) -> int:
        return sum(d.n for d in self.drives)

    def signal_names(self) -> list[str]:
        """Signals present in every drive (what a model can be trained to predict)."""
        names = [set(d.signals) for d in self.drives]
        return sorted(set.intersection(*names)) if names else []

    def segments(self, split: str | None = None) -> list[Segment]:
        segs = [Segment(d, s, a, b) for d, s, a, b in self.manifest["splits"]["segments"]]
        return segs if split is None else [s for s in segs if s.split == split]

    def split_summary(self) -> dict[str, dict]:
        """Per split: its frames, the sessions they come from, and seconds of driving (at
        each drive's own rate; drives without one add no seconds)."""
        out = {}
        for split in ("train", "val", "test"):
            segs = self.segments(split)
            rates = [float(self.manifest["drives"][g.drive].get("rate_hz") or 0) for g in segs]
            out[split] = {
                "frames": sum(len(g) for g in segs),
                "sessions": sorted({session_of(self.drives[g.drive].name) for g in segs}),
                "seconds": sum(len(g) / r for g, r in zip(segs, rates, strict=True) if r),
            }
        return out

    def resplit(self, cfg: SplitConfig) -> None:
        """Recompute splits and rewrite the manifest atomically (frames untouched)."""
        self.manifest["splits"] = _split_entry(
            [d.n for d in self.drives], cfg, [d.name for d in self.drives]
        )
        write_json(self.path / "manifest.json", self.manifest)

    def close(self) -> None:
        for d in self.drives:
            d.close()
