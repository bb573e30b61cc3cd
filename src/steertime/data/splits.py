"""Train/val/test splits that never let a sequence straddle two splits.

Modes:
- `tail`: in each drive, train first, then val, then test (the held-out final block);
- `blocks`: each drive is cut into `n_blocks` contiguous blocks, assigned by a seeded draw;
- `drive`: whole drives are assigned by a seeded draw (needs at least 3 drives).
In the time-based modes, `guard` frames are dropped at every boundary between two
splits, so no window of up to `guard` frames can see both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from steertime.errors import SteertimeError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    mode: str = "tail"
    val: float = 0.15
    test: float = 0.15
    guard: int = 50
    n_blocks: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("tail", "blocks", "drive"):
            raise SteertimeError(f"split mode {self.mode!r} is not one of tail, blocks, drive")
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise SteertimeError("val and test fractions must be in [0, 1) and sum below 1")
        if self.guard < 0 or self.n_blocks < 1:
            raise SteertimeError("guard must be >= 0 and n_blocks >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of drive `drive` belong to `split`."""

    drive: int
    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def _blocks_to_segments(
    drive: int, bounds: list[tuple[int, int, str]], guard: int
) -> list[Segment]:
    """Merge adjacent same-split blocks; drop `guard` frames after each split change."""
    out: list[Segment] = []
    for start, stop, split in bounds:
        if out and out[-1].split != split:
            start = max(start, out[-1].stop + guard)
        elif out and out[-1].stop == start:
            out[-1] = Segment(drive, split, out[-1].start, stop)
            continue
        if stop > start:
            out.append(Segment(drive, split, start, stop))
    return out


def make_splits(lengths: list[int], cfg: SplitConfig) -> list[Segment]:
    """Segments for drives of the given lengths (deterministic given cfg)."""
    rng = np.random.default_rng(cfg.seed)
    segs: list[Segment] = []
    if cfg.mode == "drive":
        if len(lengths) < 3 and (cfg.val > 0 and cfg.test > 0):
            raise SteertimeError(
                f"split mode 'drive' needs at least 3 drives, found {len(lengths)}; "
                "use --split tail or --split blocks"
            )
        order = rng.permutation(len(lengths))
        n_test = max(1, round(cfg.test * len(lengths))) if cfg.test > 0 else 0
        n_val = max(1, round(cfg.val * len(lengths))) if cfg.val > 0 else 0
        for k, d in enumerate(order):
            split = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            segs.append(Segment(int(d), split, 0, lengths[d]))
        return sorted(segs, key=lambda s: s.drive)
    for d, n in enumerate(lengths):
        if cfg.mode == "tail":
            a = round(n * (1 - cfg.val - cfg.test))
            b = round(n * (1 - cfg.test))
            bounds = [(0, a, "train"), (a, b, "val"), (b, n, "test")]
        else:
            edges = np.linspace(0, n, cfg.n_blocks + 1).round().astype(int)
            n_test = max(1, round(cfg.test * cfg.n_blocks)) if cfg.test > 0 else 0
            n_val = max(1, round(cfg.val * cfg.n_blocks)) if cfg.val > 0 else 0
            perm = rng.permutation(cfg.n_blocks)
            label = np.array(["train"] * cfg.n_blocks, dtype=object)
            label[perm[:n_test]] = "test"
            label[perm[n_test : n_test + n_val]] = "val"
            bounds = [
                (int(edges[i]), int(edges[i + 1]), str(label[i])) for i in range(cfg.n_blocks)
            ]
        segs += _blocks_to_segments(d, [b for b in bounds if b[1] > b[0]], cfg.guard)
    return segs
