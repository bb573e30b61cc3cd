"""ROS1 bags read with pure-Python `rosbags` (no ROS install): types, stamps, JPEG frames.

Message types come from the bag itself: every ROS1 connection record carries the full
message definition, so vendor types (dbw_mkz_msgs/SteeringReport) need no package.
"""

from __future__ import annotations

import io
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from steertime.data.frames import FrameError
from steertime.errors import DataError

MAGIC = b"#ROSBAG V2.0"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DECODE_THREADS = 2  # PIL releases the GIL while it decodes a JPEG
LOOKAHEAD = 32  # frames decoded ahead of the consumer: bounded memory
T = TypeVar("T")


def is_bag(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() != ".bag":
        return False
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def open_bag(path: Path):
    """An opened `rosbags` reader, or a DataError naming the bag."""
    from rosbags.rosbag1 import Reader, ReaderError

    reader = Reader(path)
    try:
        reader.open()
    except (ReaderError, OSError, ValueError) as e:
        raise DataError(f"cannot read ROS bag ({e})", path) from None
    return reader


def typestore_of(reader, path: Path):
    """A typestore holding exactly the types the bag defines (nothing from ROS itself)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    types: dict = {}
    try:
        for c in reader.connections:
            if c.msgdef.data:
                types.update(get_types_from_msg(c.msgdef.data, c.msgtype))
        store = get_typestore(Stores.EMPTY)
        store.register(types)
    except Exception as e:  # the type system raises several kinds on a bad definition
        raise DataError(f"bad message definition in the bag ({e})", path) from None
    return store


CHUNK_THREADS = 2  # bz2 and lz4 release the GIL: chunks decompress beside the reading
CHUNKS_AHEAD = 4
OP_MSGDATA = 2


def _field(header: bytes, name: bytes) -> bytes | None:
    """A field of a ROS1 record header: repeated (uint32 length, b"name=value")."""
    pos = 0
    while pos + 4 <= len(header):
        (n,) = struct.unpack_from("<I", header, pos)
        key, _, value = header[pos + 4 : pos + 4 + n].partition(b"=")
        if key == name:
            return value
        pos += 4 + n
    return None


def messages(reader, conns: list) -> Iterator[tuple[object, int, memoryview]]:
    """(connection, record time ns, raw message) of `conns` in time order, as
    `reader.messages(conns)` yields them, with the chunks ahead read and decompressed in
    threads. Reads the bag's index as rosbags parsed it (`reader.indexes`, `.chunks`)."""
    import heapq
    import os

    entries = list(heapq.merge(*(reader.indexes[c.id] for c in conns)))
    order = list(dict.fromkeys(e.chunk_pos for e in entries))
    by_id = {c.id: c for c in reader.connections}
    fd = os.open(reader.path, os.O_RDONLY)

    def load(pos: int) -> bytes:
        chunk = reader.chunks[pos]
        return chunk.decompressor(os.pread(fd, chunk.datasize, chunk.datapos))

    try:
        with ThreadPoolExecutor(CHUNK_THREADS) as pool:
            ahead = deque(pool.submit(load, pos) for pos in order[:CHUNKS_AHEAD])
            nxt = CHUNKS_AHEAD
            current, data = None, memoryview(b"")
            for e in entries:
                if e.chunk_pos != current:
                    data = memoryview(ahead.popleft().result())
                    current = e.chunk_pos
                    if nxt < len(order):
                        ahead.append(pool.submit(load, order[nxt]))
                        nxt += 1
                pos = e.offset
                while True:  # connection records may sit before the message
                    (hlen,) = struct.unpack_from("<I", data, pos)
                    header = bytes(data[pos + 4 : pos + 4 + hlen])
                    pos += 4 + hlen
                    (dlen,) = struct.unpack_from("<I", data, pos)
                    pos += 4
                    if _field(header, b"op") == bytes([OP_MSGDATA]):
                        break
                    pos += dlen
                (conn,) = struct.unpack("<I", _field(header, b"conn") or b"\0\0\0\0")
                yield by_id[conn], e.time, data[pos : pos + dlen]
    finally:
        os.close(fd)


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """The std_msgs/Header stamp of a ROS1-serialised stamped message (seq, secs, nsecs
    lead the bytes), read without deserialising the payload."""
    _, secs, nsecs = struct.unpack_from("<III", raw, 0)
    return secs * 1_000_000_000 + nsecs


def compressed_image_bytes(raw: bytes | memoryview) -> memoryview:
    """The `data` of a ROS1 sensor_msgs/CompressedImage: header, format, then the bytes."""
    mv = memoryview(raw)
    pos = 12
    (n,) = struct.unpack_from("<I", mv, pos)  # header.frame_id
    pos += 4 + n
    (n,) = struct.unpack_from("<I", mv, pos)  # format
    pos += 4 + n
    (n,) = struct.unpack_from("<I", mv, pos)
    return mv[pos + 4 : pos + 4 + n]


def decode_jpeg(data: bytes | memoryview, where: str) -> np.ndarray | FrameError:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return FrameError(f"image cannot be decoded ({e})", where)


class BagFrames:
    """Camera frames of one or more bags: frame i is message `ordinal[i]` (0-based, in the
    bag's own order) of `topic` in bag `bag[i]`. Read forward, decoded ahead in threads."""

    def __init__(
        self, paths: Sequence[Path], topic: str, bag: np.ndarray, ordinal: np.ndarray
    ) -> None:
        self.paths = list(paths)
        self.topic = topic
        self.bag = np.asarray(bag, dtype=np.int64)
        self.ordinal = np.asarray(ordinal, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ordinal)

    def describe(self, i: int) -> str:
        return f"{self.paths[int(self.bag[i])]} {self.topic} message {int(self.ordinal[i])}"

    def subset(self, indices: Sequence[int]) -> BagFrames:
        idx = np.asarray(indices, dtype=np.int64)
        return BagFrames(self.paths, self.topic, self.bag[idx], self.ordinal[idx])

    def _runs(self) -> Iterator[tuple[int, int, int]]:
        """(bag, start, stop) spans of frames one forward pass of one bag can serve."""
        start = 0
        for i in range(1, len(self) + 1):
            if (
                i == len(self)
                or self.bag[i] != self.bag[i - 1]
                or self.ordinal[i] <= self.ordinal[i - 1]
            ):
                yield int(self.bag[start]), start, i
                start = i

    def _raw(self) -> Iterator[tuple[int, bytes | FrameError]]:
        for b, lo, hi in self._runs():
            path = self.paths[b]
            reader = open_bag(path)
            try:
                conns = [c for c in reader.connections if c.topic == self.topic]
                want = iter(range(lo, hi))
                i = next(want)
                for n, (_, _, raw) in enumerate(messages(reader, conns)):
                    if n < self.ordinal[i]:
                        continue
                    try:
                        yield i, bytes(compressed_image_bytes(raw))
                    except struct.error:
                        yield i, FrameError("truncated CompressedImage", self.describe(i))
                    i = next(want, None)
                    if i is None:
                        break
                else:
                    # the bag holds fewer messages than were counted: report, do not invent
                    for j in (i, *want):
                        yield j, FrameError("the bag ends before this message", self.describe(j))
            finally:
                reader.close()

    def iter_frames(self) -> Iterator[tuple[int, np.ndarray | FrameError]]:
        return self.iter_mapped(lambda i, frame: frame, DECODE_THREADS)

    def iter_mapped(
        self, fn: Callable[[int, np.ndarray | FrameError], T], workers: int
    ) -> Iterator[tuple[int, T]]:
        """(i, fn(i, frame)) in order, with decoding and `fn` (a resize) in `workers`
        threads while this one reads the bag."""

        def work(i: int, data: bytes) -> T:
            return fn(i, decode_jpeg(data, self.describe(i)))

        with ThreadPoolExecutor(max(1, workers)) as pool:
            ahead: deque[tuple[int, Future | T]] = deque()
            for i, data in self._raw():
                if isinstance(data, FrameError):
                    ahead.append((i, fn(i, data)))
                else:
                    ahead.append((i, pool.submit(work, i, data)))
                while len(ahead) >= LOOKAHEAD or (ahead and _done(ahead[0][1])):
                    j, f = ahead.popleft()
                    yield j, f.result() if isinstance(f, Future) else f
            while ahead:
                j, f = ahead.popleft()
                yield j, f.result() if isinstance(f, Future) else f


def _done(f: object) -> bool:
    return not isinstance(f, Future) or f.done()
