"""Camera faults: what real cameras do between good frames, as data.

A fault schedule is one code per frame (`CODES`). Five kinds:

- `drop`: no frame arrives at all;
- `freeze`: the camera repeats its last frame;
- `blackout`: a dark frame (a tunnel mouth, a bridge, a failing sensor);
- `glare`: an over-exposed frame (low sun, oncoming headlights);
- `blob`: opaque soft blobs (dirt, a raindrop) over part of the image that persist for
  the whole event, while the rest of the frame stays good.

The first four leave no usable image: a model is told "frame missing"
(`BLANKING`) and must carry on from memory; a blob leaves an image the model must learn
to read around. Faults are written as `KIND:LENGTH_S@EVERY_S` entries separated by
commas, e.g. `blackout:0.5@10` (0.5 s blackouts, one every ~10 s) or
`drop:0.3@20,blob:8@60`; each entry is its own schedule, onsets drawn uniformly between
0.5x and 1.5x EVERY_S apart.

The same schedule serves the simulator (`drive --faults`), training augmentation
(`data.faults`) and offline evaluation (`evaluate --faults`), so one spec means one thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steertime.errors import SteertimeError

CODES = {"none": 0, "drop": 1, "freeze": 2, "blackout": 3, "glare": 4, "blob": 5}
NAMES = {v: k for k, v in CODES.items()}
# Codes after which no image is usable: the model gets the frame-missing flag.
BLANKING = frozenset({CODES["drop"], CODES["freeze"], CODES["blackout"], CODES["glare"]})
# Frames whose mean level is outside [DARK, BRIGHT] are treated as blank by a predictor's
# fault gate (a blackout or glare frame); both fault images land well outside it.
DARK, BRIGHT = 16.0, 239.0


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    length_s: float
    every_s: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.length_s:g}@{self.every_s:g}"


def parse_faults(spec: str | None) -> list[FaultSpec]:
    """`blackout:0.5@10,drop:0.3@20` -> specs; a one-line error names the bad entry."""
    out: list[FaultSpec] = []
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        kind, _, rest = entry.partition(":")
        length, _, every = rest.partition("@")
        if kind not in CODES or kind == "none":
            kinds = ", ".join(k for k in CODES if k != "none")
            raise SteertimeError(f"camera fault {entry!r}: kind must be one of {kinds}")
        try:
            length_s, every_s = float(length), float(every)
        except ValueError:
            raise SteertimeError(
                f"camera fault {entry!r}: write KIND:LENGTH_S@EVERY_S, e.g. blackout:0.5@10"
            ) from None
        if not (0 < length_s < every_s) or not np.isfinite(every_s):
            raise SteertimeError(
                f"camera fault {entry!r}: need 0 < length ({length_s:g} s) < every ({every_s:g} s)"
            )
        out.append(FaultSpec(kind, length_s, every_s))
    return out


def fault_schedule(
    n: int, fps: float, specs: list[FaultSpec], rng: np.random.Generator
) -> np.ndarray:
    """(n,) int8 fault codes for n frames at `fps`; where two entries overlap the first
    listed wins. Onsets are 0.5x–1.5x `every_s` apart, the first one too."""
    codes = np.zeros(n, np.int8)
    for spec in specs:
        length = max(1, int(round(spec.length_s * fps)))
        t = rng.uniform(0.5, 1.5) * spec.every_s * fps
        while t < n:
            a = int(t)
            window = codes[a : a + length]
            window[window == 0] = CODES[spec.kind]
            t += rng.uniform(0.5, 1.5) * spec.every_s * fps
    return codes


def event_starts(codes: np.ndarray) -> np.ndarray:
    """For each frame, the index of the first frame of its run of equal codes."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = codes[1:] != codes[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0))


def blob_mask(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W) opacity in [0, 1] of 1–3 soft blobs drawn from `seed`: the same seed (one
    event) gives the same blobs, so they persist however the frames are chunked."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    alpha = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.2, 1.0) * height, rng.uniform(0.0, 1.0) * width
        r = rng.uniform(0.12, 0.3) * min(height, width)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        alpha = np.maximum(alpha, np.clip(1.5 - d, 0.0, 1.0))  # opaque core, soft rim
    return alpha


BLOB_RGB = np.array([60, 52, 40], np.float32)  # dirt


def fault_image(
    frame: np.ndarray, code: int, rng: np.random.Generator, blob_seed: int = 0
) -> np.ndarray:
    """The image a faulty camera delivers for `code` (blackout, glare, blob); `drop` and
    `freeze` are about *which* image arrives and are handled by `FaultyCamera`."""
    if code == CODES["blackout"]:
        noise = rng.normal(0, 2.0, frame.shape)
        return np.clip(frame * 0.03 + 3 + noise, 0, 255).astype(np.uint8)
    if code == CODES["glare"]:
        noise = rng.normal(0, 2.0, frame.shape)
        return np.clip(255 - (255.0 - frame) * 0.06 - 2 + noise, 0, 255).astype(np.uint8)
    if code == CODES["blob"]:
        a = blob_mask(frame.shape[0], frame.shape[1], blob_seed)[..., None]
        return (frame * (1 - a) + BLOB_RGB * a).astype(np.uint8)
    return frame


class FaultyCamera:
    """A camera with a fault schedule, frame by frame (the simulator's closed loop):
    `camera(i, frame)` -> (the image that arrives, or None when dropped; the code)."""

    def __init__(self, codes: np.ndarray, seed: int) -> None:
        self.codes, self.seed = codes, seed
        self.starts = event_starts(codes)
        self.rng = np.random.default_rng(seed)
        self.last: np.ndarray | None = None

    def __call__(self, i: int, frame: np.ndarray) -> tuple[np.ndarray | None, int]:
        code = int(self.codes[i]) if i < len(self.codes) else 0
        if code == CODES["drop"]:
            return None, code
        if code == CODES["freeze"] and self.last is not None:
            return self.last, code
        blob_seed = self.seed * 1_000_003 + int(self.starts[min(i, len(self.starts) - 1)])
        image = fault_image(frame, code, self.rng, blob_seed)
        self.last = image
        return image, code


def apply_offline(
    frames: np.ndarray, codes: np.ndarray, starts: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Faults on a block of frames for training or offline evaluation:
    frames (T, H, W, 3) uint8 (changed in place), codes/starts (T,) -> (frames, missing).

    A blanking frame becomes zeros with the missing flag set — what a predictor's fault
    gate hands the model for a dropped, frozen, black or glaring frame — and a blob is
    drawn over the image. `starts` are the event starts (`event_starts`) of the whole
    drive, so a blob is the same in every chunk of one event."""
    missing = np.isin(codes, list(BLANKING))
    frames[missing] = 0
    for i in np.flatnonzero(codes == CODES["blob"]):
        a = blob_mask(frames.shape[1], frames.shape[2], seed * 1_000_003 + int(starts[i]))
        frames[i] = (frames[i] * (1 - a[..., None]) + BLOB_RGB * a[..., None]).astype(np.uint8)
    return frames, missing


def is_blank(frame: np.ndarray) -> bool:
    """A frame too dark or too bright to carry an image (a blackout or glare), judged on
    every 4th pixel of every 4th row: cheap enough for every frame."""
    level = float(frame[::4, ::4].mean())
    return level < DARK or level > BRIGHT


def fault_windows(codes: np.ndarray, after: int = 0) -> np.ndarray:
    """(n,) bool: frames inside a fault event, or within `after` frames of its end (a
    model may still be recovering from it)."""
    inside = codes != 0
    if after <= 0:
        return inside
    out = inside.copy()
    for k in range(1, after + 1):
        out[k:] |= inside[:-k]
    return out
