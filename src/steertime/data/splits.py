"""Train/val/test splits that never let a sequence straddle two splits.

Modes:
- `tail`: in each drive, train first, then val, then test (the held-out final block);
- `blocks`: each drive is cut into `n_blocks` contiguous blocks, assigned by a seeded draw;
- `drive`: whole drives are assigned by a seeded draw (needs at least 3 drives);
- `session`: whole named sessions are held out — every drive of `test_sessions` is test,
  of `val_sessions` val; the rest is train, with the final `val` fraction of each of its
  drives as val when no val session is named ("train on two sessions, test on the third").
In the time-based modes, `guard` frames are dropped at every boundary between two
splits, so no window of up to `guard` frames can see both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from steertime.errors import SteertimeError

SPLITS = ("train", "val", "test")
MODES = ("tail", "blocks", "drive", "session")


def session_of(drive_name: str) -> str:
    """The session a drive belongs to: its name less the `#j` of a gap split and the
    `recording:` prefix (a tub's drives are named `TUB:SESSION` or `TUB:SESSION#j`)."""
    return drive_name.split("#", 1)[0].rsplit(":", 1)[-1]


@dataclass(frozen=True)
class SplitConfig:
    mode: str = "tail"
    val: float = 0.15
    test: float = 0.15
    guard: int = 50
    n_blocks: int = 10
    seed: int = 0
    test_sessions: tuple[str, ...] = ()  # session mode only
    val_sessions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SteertimeError(f"split mode {self.mode!r} is not one of {', '.join(MODES)}")
        object.__setattr__(self, "test_sessions", tuple(self.test_sessions))
        object.__setattr__(self, "val_sessions", tuple(self.val_sessions))
        named = self.test_sessions or self.val_sessions
        if self.mode == "session" and not named:
            raise SteertimeError("split mode 'session' needs --test-session (and/or --val-session)")
        if self.mode != "session" and named:
            raise SteertimeError("--test-session/--val-session need split mode 'session'")
        if set(self.test_sessions) & set(self.val_sessions):
            raise SteertimeError("a session cannot be both test and val")
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise SteertimeError("val and test fractions must be in [0, 1) and sum below 1")
        if self.guard < 0 or self.n_blocks < 1:
            raise SteertimeError("guard must be >= 0 and n_blocks >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["test_sessions"], d["val_sessions"] = list(self.test_sessions), list(self.val_sessions)
        return d


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


def _session_splits(lengths: list[int], names: list[str], cfg: SplitConfig) -> list[Segment]:
    sessions = [session_of(n) for n in names]
    for wanted in (*cfg.test_sessions, *cfg.val_sessions):
        if wanted not in sessions:
            known = ", ".join(dict.fromkeys(sessions))
            raise SteertimeError(f"session {wanted!r} is not in this recording; sessions: {known}")
    segs: list[Segment] = []
    for d, (n, sid) in enumerate(zip(lengths, sessions, strict=True)):
        if sid in cfg.test_sessions:
            segs.append(Segment(d, "test", 0, n))
        elif sid in cfg.val_sessions:
            segs.append(Segment(d, "val", 0, n))
        elif cfg.val_sessions or cfg.val == 0:
            segs.append(Segment(d, "train", 0, n))
        else:
            a = round(n * (1 - cfg.val))
            segs += _blocks_to_segments(d, [(0, a, "train"), (a, n, "val")], cfg.guard)
    if not any(s.split == "train" for s in segs):
        raise SteertimeError("split mode 'session' left no session for training")
    return segs


def make_splits(
    lengths: list[int], cfg: SplitConfig, names: list[str] | None = None
) -> list[Segment]:
    """Segments for drives of the given lengths (deterministic given cfg).

    `names` (the drives' names) are needed by the `session` mode only."""
    rng = np.random.default_rng(cfg.seed)
    segs: list[Segment] = []
    if cfg.mode == "session":
        if names is None or len(names) != len(lengths):
            raise SteertimeError("split mode 'session' needs the drives' names")
        return _session_splits(lengths, names, cfg)
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


def refuse_empty_train(segs: list[Segment], lengths: list[int], cfg: SplitConfig) -> list:
    """A split without training frames cannot train: say so when it is made (prepare,
    split), not at the first `train`."""
    if sum(lengths) and not any(s.split == "train" and len(s) for s in segs):
        raise SteertimeError(
            f"the {cfg.mode} split (val {cfg.val}, test {cfg.test}, guard {cfg.guard}) leaves "
            f"no training frames in {sum(lengths)} frames; lower --val/--test or --guard"
        )
    return segs
