"""`steertime verify CACHE`: recompute a cache's content hash and compare it with its manifest.

`Cache.open` checks what is cheap (every frames.npy has the size its manifest says); a bit
flip inside a frame or a label keeps the size, so only re-reading every byte finds it. The
hash is the one `prepare` computed (blake2b over each drive's frame bytes, then its signal
table as float64), so a cache that verifies holds exactly what was prepared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from steertime.data.cache import NPY_HEADER, Cache

CHUNK = 16 << 20  # bytes read at a time: memory stays flat on caches larger than RAM


@dataclass(frozen=True)
class Verified:
    path: str
    ok: bool
    stored: str
    computed: str
    frames: int

    def line(self) -> str:
        if self.ok:
            return f"{self.path}: ok ({self.frames} frames, content hash {self.stored})"
        return (
            f"{self.path}: content hash {self.computed} does not match the manifest's "
            f"{self.stored}: frames or labels changed since prepare (re-prepare it)"
        )


def verify_cache(path: str, progress: Callable[[int], None] | None = None) -> Verified:
    """Re-read every frame and label of a cache; `progress(n)` gets the frames read."""
    cache = Cache.open(path)
    hasher = hashlib.blake2b(digest_size=16)
    for d in cache.drives:
        frame_bytes = d.height * d.width * 3
        with open(d.path / "frames.npy", "rb") as f:
            f.seek(NPY_HEADER)
            per = max(1, CHUNK // frame_bytes)
            left = d.n
            while left:
                k = min(per, left)
                hasher.update(f.read(k * frame_bytes))
                left -= k
                if progress:
                    progress(k)
        table = pd.read_parquet(d.path / "signals.parquet")
        hasher.update(table.to_numpy(np.float64).tobytes())
    computed = hasher.hexdigest()
    return Verified(
        str(cache.path),
        computed == cache.content_hash,
        cache.content_hash,
        computed,
        cache.n_frames,
    )
