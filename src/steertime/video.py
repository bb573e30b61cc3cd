"""Writing H.264 videos with PyAV, atomically (temporary file, renamed when complete)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class _Writer:
    def __init__(self, container, fps: int) -> None:
        self.container, self.fps, self.stream = container, fps, None

    def write(self, img: np.ndarray) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.width, self.stream.height = img.shape[1], img.shape[0]
            self.stream.pix_fmt = "yuv420p"
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)


@contextlib.contextmanager
def h264_writer(out: str | Path, fps: float) -> Iterator[_Writer]:
    """Yield a writer with `.write(rgb_uint8_frame)`; the file appears only on success."""
    import av

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its 0600 would make the video private; av creates this name with the
    # mode open() gives (0666 less the umask), and the random part keeps it unique
    tmp = str(out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}{out.suffix or '.mp4'}")
    try:
        with av.open(tmp, "w") as container:
            w = _Writer(container, int(round(fps)))
            yield w
            w.close()
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
