"""Lazy frame sources: a drive's frames are decoded on demand, never all held in RAM.

Every source yields RGB uint8 arrays of shape (H, W, 3). Sequential iteration is the
fast path (video decodes forward); `subset` makes a view used when a recording is
split into drives or rows are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
            try:
                for n, frame in enumerate(container.decode(video=0)):
                    if n < target:
                        continue
                    yield i, frame.to_ndarray(format="rgb24")
                    nxt = next(want, None)
                    if nxt is None:
                        return
                    i, target = nxt
            except av.error.FFmpegError as e:
                yield i, FrameError(f"video decoding failed at frame {target} ({e})", self.path)
                return
        # The video ended before the frames we were promised: report, do not invent.
        yield i, FrameError(f"video ends before frame {target}", self.path)

    def subset(self, indices: Sequence[int]) -> VideoFrames:
        return VideoFrames(self.path, self.frame_numbers[np.asarray(indices, dtype=np.int64)])


def count_video_frames(path: Path) -> int:
    """Frames in a video's first stream, counted by demuxing packets (no decoding)."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            return sum(1 for p in c.demux(stream) if p.size > 0)
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise DataError(f"video cannot be read ({e})", path) from None


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
