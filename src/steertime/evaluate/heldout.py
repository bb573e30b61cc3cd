"""Which frames of a recording a run trained on, and which it never saw.

A run remembers its cache (`RunMeta.data_path`); the cache remembers, per drive, the
source rows it kept and its train/val/test segments. Rendering a whole drive can then mark
the held-out part, so a viewer does not take a fit to training frames for generalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steertime.data import Cache, Drive
from steertime.errors import SteertimeError


def split_labels(cache_path: str | Path | None, drive: Drive) -> np.ndarray | None:
    """Per frame of `drive`: 'train', 'val', 'test' or '' (a guard gap, or not cached).
    None when the cache is gone or holds no drive of this name (nothing to mark)."""
    if not cache_path:
        return None
    try:
        cache = Cache.open(cache_path)
    except (SteertimeError, OSError):
        return None
    where = {int(r): i for i, r in enumerate(drive.rows)}
    labels = np.full(len(drive), "", dtype=object)
    matched = False
    for split in ("train", "val", "test"):
        for s in cache.segments(split):
            cd = cache.drives[s.drive]
            if cd.name != drive.name:
                continue
            matched = True
            for r in cd.rows[s.start : s.stop]:
                if (i := where.get(int(r))) is not None:
                    labels[i] = split
    return labels if matched else None
