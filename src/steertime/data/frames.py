"""Lazy frame sources: a drive's frames are decoded on demand, never all held in RAM.

Every source yields RGB uint8 arrays of shape (H, W, 3). Sequential iteration is the
fast path (video decodes forward); `subset` makes a view used when a recording is
split into drives or rows are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from steertime.errors import DataError


def keep_present(
    present: Sequence[bool] | np.ndarray,
    labels: Sequence[str],
    source: Path,
    strict: bool,
    problems: list[str],
    noun: str = "rows",
) -> np.ndarray:
    """The one rule for rows whose image file is absent, shared by every reader.

    Skip them with a note in `problems` (which ends up in the drive and the cache
    manifest), or raise when `strict` or when no row has its image. `labels` names each
    row for the message (a row number, or `catalog row`). Returns the mask of rows kept."""
    present = np.asarray(present, dtype=bool)
    if present.all():
        return present
    bad = [lab for lab, ok in zip(labels, present, strict=True) if not ok]
    listed = ", ".join(bad[:8]) + (f" … ({len(bad)} in all)" if len(bad) > 8 else "")
    msg = f"{len(bad)} {noun} name missing images ({noun} {listed})"
    if strict or not present.any():
        raise DataError(msg, source)
    problems.append(msg + "; those are skipped")
    return present


def skip_imageless_groups(
    present: Sequence[bool] | np.ndarray,
    groups: Sequence[str],
    labels: Sequence[str],
    source: Path,
    strict: bool,
    problems: list[str],
    noun: str = "records",
    group: str = "session",
) -> np.ndarray:
    """The rule for a recording made of groups (sessions, drives, bags, epochs) whose
    images were copied only in part, shared by every reader that groups rows.

    Real tubs often lack the images of whole early sessions; failing the lot for them
    would throw away every good session. So a group none of whose rows has its image is
    skipped whole, with a note in `problems` naming it and counting its rows. Raises when
    `strict`, or when no group keeps a single image. Rows missing their image inside a
    group that has others are left to `keep_present`, applied per group by the caller.
    Returns the mask of rows whose group is kept."""
    present = np.asarray(present, dtype=bool)
    rows: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        rows.setdefault(g, []).append(i)
    empty = {g: ix for g, ix in rows.items() if not present[ix].any()}
    if not empty:
        return np.ones(len(present), dtype=bool)

    def what(g: str, ix: list[int]) -> str:
        span = labels[ix[0]] if len(ix) == 1 else f"{labels[ix[0]]} … {labels[ix[-1]]}"
        return f"{group} {g}: all {len(ix)} {noun} name missing images ({noun} {span})"

    if strict:
        raise DataError("; ".join(what(g, ix) for g, ix in empty.items()), source)
    if len(empty) == len(rows):
        raise DataError(
            f"no {group} has any of its images, nothing to read: "
            + "; ".join(what(g, ix) for g, ix in empty.items()),
            source,
        )
    problems += [f"{what(g, ix)}; the {group} is skipped" for g, ix in empty.items()]
    keep = np.ones(len(present), dtype=bool)
    for ix in empty.values():
        keep[ix] = False
    return keep


class FrameError(DataError):
    """One frame could not be decoded; the stream around it may still be usable."""


class FrameSource(Protocol):
    """What a Drive needs from its frames."""

    def __len__(self) -> int: ...

    def describe(self, i: int) -> str:
        """Where frame i comes from (a file name, or a video and frame number)."""
        ...

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray | FrameError]]:
        """Yield (i, frame) in order; a frame that fails to decode is yielded as its error."""
        ...

    def subset(self, indices: Sequence[int]) -> FrameSource: ...


def decode_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8, raising FrameError naming the file if it is bad."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FrameError("image file is missing", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FrameError(f"image cannot be decoded ({e})", path) from None


class ImageFiles:
    """Frames stored one image file per frame (JPG/PNG)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def load(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i])

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray | FrameError]]:
        for i in range(len(self.paths)):
            try:
                yield i, self.load(i)
            except FrameError as e:
                yield i, e

    def subset(self, indices: Sequence[int]) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in indices])


class VideoFrames:
    """Frames `frame_numbers` (0-based, increasing) of a video file, decoded with PyAV."""

    def __init__(self, path: Path, frame_numbers: Sequence[int]) -> None:
        self.path = Path(path)
        self.frame_numbers = np.asarray(frame_numbers, dtype=np.int64)
        if len(self.frame_numbers) > 1 and np.any(np.diff(self.frame_numbers) <= 0):
            raise DataError(
                "video frames are not in time order (frame numbers must increase with time)",
                path,
            )

    def __len__(self) -> int:
        return len(self.frame_numbers)

    def describe(self, i: int) -> str:
        return f"{self.path} frame {int(self.frame_numbers[i])}"

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray | FrameError]]:
        """Frames in order, decoding past damaged packets: a frame lost to them is a
        FrameError naming its number (counted and reported by prepare and predict), and
        the frames after it keep their numbers (from their timestamps), so labels stay
        aligned."""
        import av

        if len(self.frame_numbers) == 0:
            return
        want = iter(enumerate(self.frame_numbers.tolist()))
        i, target = next(want)
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise DataError(f"video cannot be opened ({e})", self.path) from None
        with container:
            stream = container.streams.video[0]
            clock = _FrameClock(container, stream)
            n = -1  # number of the last decoded frame
            for frame in _decode_past_damage(container, stream):
                n = max(n + 1, clock.index(frame.pts))  # a jump: frames were lost
                while target < n:
                    yield (
                        i,
                        FrameError(
                            f"frame {target} lost (damaged video data before frame {n})", self.path
                        ),
                    )
                    nxt = next(want, None)
                    if nxt is None:
                        return
                    i, target = nxt
                if target == n:
                    yield i, frame.to_ndarray(format="rgb24")
                    nxt = next(want, None)
                    if nxt is None:
                        return
                    i, target = nxt
        # The video ended before the frames we were promised: report, do not invent.
        yield i, FrameError(f"video ends before frame {target}", self.path)
        for i, target in want:
            yield i, FrameError(f"video ends before frame {target}", self.path)

    def subset(self, indices: Sequence[int]) -> VideoFrames:
        return VideoFrames(self.path, self.frame_numbers[np.asarray(indices, dtype=np.int64)])


RAW_STREAMS = {"hevc", "h264", "h265", "m4v", "mjpeg", "rawvideo"}


class _FrameClock:
    """A frame's number from its timestamp (None where the stream has none, e.g. a raw
    .hevc): the first timestamp is frame 0, then one frame every 1/average_rate."""

    def __init__(self, container, stream) -> None:
        self.rate = stream.average_rate
        self.base = stream.time_base
        self.origin = stream.start_time
        # A raw elementary stream (comma2k19's .hevc) has made-up timestamps: count there.
        if set(container.format.name.split(",")) & RAW_STREAMS:
            self.rate = None

    def index(self, pts: int | None) -> int:
        if pts is None or not self.rate or self.base is None:
            return -1
        if self.origin is None:
            self.origin = pts
        return round(float((pts - self.origin) * self.base * self.rate))


def _decode_past_damage(container, stream) -> Iterator:
    """Decoded frames, packet by packet: a packet the decoder rejects is skipped (its
    frame is lost), where `container.decode()` would stop at the first one."""
    import av

    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                continue
    except av.error.FFmpegError:
        return  # the container itself is cut short: what follows is unreadable


@dataclass(frozen=True)
class VideoCount:
    """A video's frames: `total` by the timestamps of its last packet, `present` packets
    that are there; the difference was lost to damage in the middle."""

    total: int
    present: int

    @property
    def lost(self) -> int:
        return self.total - self.present

    def note(self, path: Path) -> str:
        return (
            f"{self.lost} of {self.total} frames of {Path(path).name} are lost to damaged "
            "video data (their rows are dropped)"
        )


def video_frame_count(path: Path) -> VideoCount:
    """Frames in a video's first stream, counted by demuxing packets (no decoding)."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            clock = _FrameClock(c, stream)
            present, last = 0, -1
            try:
                for p in c.demux(stream):
                    if p.size > 0:
                        present += 1
                        last = max(last, clock.index(p.pts))
            except av.error.FFmpegError:
                if not present:
                    raise
            return VideoCount(max(present, last + 1), present)
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise DataError(f"video cannot be read ({e})", path) from None


def count_video_frames(path: Path) -> int:
    """Frames in a video's first stream, lost ones included (see `video_frame_count`)."""
    return video_frame_count(path).total


class ArrayFrames:
    """Frames produced by a function of the index (generated drives, tests, benchmarks)."""

    def __init__(self, n: int, make, label: str = "generated", offset: int = 0) -> None:
        self.n, self.make, self.label, self.offset = n, make, label, offset
        self._indices: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n if self._indices is None else len(self._indices)

    def _index(self, i: int) -> int:
        return int(i if self._indices is None else self._indices[i])

    def describe(self, i: int) -> str:
        return f"{self.label} frame {self._index(i)}"

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray | FrameError]]:
        for i in range(len(self)):
            yield i, self.make(self._index(i))

    def subset(self, indices: Sequence[int]) -> ArrayFrames:
        out = ArrayFrames(self.n, self.make, self.label)
        base = np.arange(self.n) if self._indices is None else self._indices
        out._indices = base[np.asarray(indices, dtype=np.int64)]
        return out
