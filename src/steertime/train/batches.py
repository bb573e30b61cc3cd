"""Batches for truncated backpropagation through time.

Stateful (Komanda): the training frames are laid out as `batch_size` lanes; each lane
walks through drive segments in consecutive chunks of `seq_len`, so the recurrent state
of one chunk is the right starting state for the next. A row's state is reset where
its lane enters a new segment. Lanes are rebuilt each epoch from (seed, epoch) — a
shuffled segment order and a random phase — so a resumed run sees the same batches.

Windows: independent random windows of `burn_in + seq_len` frames; the state starts
fresh in every window and the first `burn_in` steps only warm it up.

Lead (`data.lead`, frames): the target of frame t is the log at t + lead, clamped at the
drive's end (`steertime.data.lead`). Smooth (`data.smooth`, k frames): training targets
are the centred mean of the 2k+1 log values around that row (`smoothed`), within the drive.
Auxiliary leads (`train.aux_leads`): `aux_targets` (B, T, L, K) holds the targets each
lead further on (smoothed alike), for the training-only head that predicts them.
Teacher (`data.teacher`, `steertime.train.teacher`): after smoothing, the training
targets are mixed with what trained runs predict for those rows.

Frame steps (`data.strides`, opt-in): each segment's pass of an epoch plays the drive at
every k-th frame, k drawn from the list per segment (a chunk of T frames then spans
(T-1)k+1 log rows; a segment too short for that plays at k = 1), so the memory learns the
motion of more than one frame rate — a car whose computer falls behind its camera sees
every second frame.

Augmentation (opt-in) is drawn once per run of chunks that share a state — at every
reset — so a sequence is never mirrored or re-lit halfway through its memory:
- `flip`: mirror left-right and negate the antisymmetric signals (steering, torque, …);
- `brightness`: multiply the frames by a gain in [1 - b, 1 + b];
- `color`: contrast and saturation each scaled by a factor in [1 - c, 1 + c] and each
  colour channel by one in [1 - c/2, 1 + c/2] (white balance) — another room's lamps;
- `blur`: smear the frames horizontally over k pixels, k drawn in [1, blur] — the motion
  blur of a camera turning faster or exposing longer than the recorded one;
- `shift`: translate the frames by (dy, dx) pixels, each in [-s, s], edges repeated;
  with `shift_steer` (the reader's), a horizontal shift is read as the camera yawed and
  the steering target moves by `shift_steer * dx`, clipped to the drive's logged range;
- `faults` (`data.faults`, e.g. `blackout:0.5@5,drop:0.3@10`): camera faults on a
  schedule drawn per run of chunks (`steertime.data.faults`), continuous across its
  chunks. Blanking faults (drop, freeze, blackout, glare) zero the frame and set the
  reader's `missing` flags (B, T) — what the predictor's fault gate hands the model — and
  are only drawn for models that read the flag; blobs are drawn over the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from steertime.data import Cache, Segment
from steertime.data.faults import (
    BLANKING,
    CODES,
    FaultSpec,
    apply_offline,
    event_starts,
    fault_schedule,
)
from steertime.data.lead import lead_rows
from steertime.errors import SteertimeError
from steertime.train.teacher import Teacher

# Signals that change sign when the world is mirrored left-right.
ANTISYMMETRIC = frozenset({"steering", "torque", "wheel_measured", "lateral_offset"})


@dataclass(frozen=True)
class Chunk:
    drive: int
    start: int
    reset: bool  # the state must start fresh here
    flip: bool = False
    gain: float = 1.0
    fault_seed: int = -1  # >= 0: the seed of this run of chunks' fault schedule
    dy: int = 0  # pixels the frames move down (negative: up)
    dx: int = 0  # pixels the frames move right
    stride: int = 1  # log rows between consecutive frames of the chunk
    contrast: float = 1.0  # factor on each frame's deviation from its mean grey
    saturation: float = 1.0  # factor on each pixel's deviation from its grey
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # gain per RGB channel
    mix: float = 1.0  # < 1: weight of this lane, blended with the lane `mix_offset` on
    mix_offset: int = 0  # (modulo this process's lanes)
    blur: int = 1  # pixels each frame is smeared over horizontally (1: sharp)


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    brightness: float = 0.0
    faults: tuple[FaultSpec, ...] = ()
    shift: int = 0
    strides: tuple[int, ...] = (1,)  # frame steps drawn per segment (schedules, not `draw`)
    color: float = 0.0
    mixup: float = 0.0  # Beta(mixup, mixup) blend with another lane (see `mixed`)
    blur: int = 0  # longest horizontal smear in pixels (`blurred`); 0: off

    def stride(self, rng: np.random.Generator) -> int:
        # drawn only when there is a choice, so runs without it keep their random streams
        return int(rng.choice(self.strides)) if len(self.strides) > 1 else self.strides[0]

    @property
    def active(self) -> bool:
        return (
            self.flip
            or self.brightness > 0
            or bool(self.faults)
            or self.shift > 0
            or self.color > 0
            or self.mixup > 0
            or self.blur > 1
        )

    def draw(self, rng: np.random.Generator) -> dict:
        out = {
            "flip": bool(self.flip and rng.random() < 0.5),
            "gain": float(1 + rng.uniform(-self.brightness, self.brightness)),
        }
        if self.faults:
            out["fault_seed"] = int(rng.integers(0, 2**31 - 1))
        if self.shift:  # drawn last, so runs without a shift keep their random streams
            out["dy"], out["dx"] = (int(v) for v in rng.integers(-self.shift, self.shift + 1, 2))
        if self.color:  # last again: runs without it draw as before
            c = self.color
            out["contrast"], out["saturation"] = (float(v) for v in 1 + rng.uniform(-c, c, 2))
            out["tint"] = tuple(float(v) for v in 1 + rng.uniform(-c / 2, c / 2, 3))
        if self.mixup:  # last again
            lam = float(rng.beta(self.mixup, self.mixup))
            out["mix"], out["mix_offset"] = max(lam, 1 - lam), int(rng.integers(1, 2**16))
        if self.blur > 1:  # last again
            out["blur"] = int(rng.integers(1, self.blur + 1))
        return out


def mixed(x: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
    """(B, T, ...) lanes blended as their chunks say: lane b becomes mix * x[b] + (1 - mix)
    * x[(b + mix_offset) % B] (mixup, Zhang et al. 2018, along whole sequences); uint8
    frames are rounded back to uint8. Lanes without a mix are returned as they are."""
    if len(chunks) < 2:  # no other lane to blend with
        return x
    out = x.copy()
    for b, c in enumerate(chunks):
        if c.mix != 1.0:
            other = x[(b + c.mix_offset) % len(chunks)].astype(np.float32)
            blend = c.mix * x[b].astype(np.float32) + (1 - c.mix) * other
            out[b] = np.rint(blend) if x.dtype == np.uint8 else blend
    return out


def shifted(frames: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(T, H, W, C) frames moved by (dy, dx) pixels, the uncovered border repeating the
    edge rows and columns."""
    h, w = frames.shape[1:3]
    py, px = abs(dy), abs(dx)
    padded = np.pad(frames, ((0, 0), (py, py), (px, px), (0, 0)), mode="edge")
    return padded[:, py - dy : py - dy + h, px - dx : px - dx + w]


def blurred(frames: np.ndarray, k: int) -> np.ndarray:
    """(T, H, W, C) uint8 frames, each pixel the mean of the k pixels of its row centred
    on it (a horizontal box filter; edges repeated), rounded back to uint8."""
    if k <= 1:
        return frames
    padded = np.pad(frames, ((0, 0), (0, 0), ((k - 1) // 2, k // 2), (0, 0)), mode="edge")
    c = np.cumsum(padded, axis=2, dtype=np.int32)  # (T, H, W+k-1, C)
    c = np.concatenate([np.zeros_like(c[:, :, :1]), c], axis=2)
    return np.rint((c[:, :, k:] - c[:, :, :-k]) / k).astype(np.uint8)


# ITU-R BT.601 luma, as Pillow's convert("L")
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def relit(
    frames: np.ndarray,
    gain: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with brightness `gain`, then saturation, contrast (about
    each frame's mean grey) and a gain per channel applied, clipped back to uint8."""
    x = frames.astype(np.float32) * gain  # (T, H, W, 3)
    if saturation != 1.0:
        grey = (x @ _GREY)[..., None]  # (T, H, W, 1)
        x = grey + saturation * (x - grey)
    if contrast != 1.0:
        mean = (x @ _GREY).mean(axis=(1, 2))[:, None, None, None]  # (T, 1, 1, 1)
        x = mean + contrast * (x - mean)
    if tint != (1.0, 1.0, 1.0):
        x *= np.asarray(tint, np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def _augment(lanes: list[list[Chunk]], aug: Augment | None, rng) -> list[list[Chunk]]:
    if aug is None or not aug.active:
        return lanes
    out = []
    for lane in lanes:
        new, params = [], {}
        for c in lane:
            if c.reset:
                params = aug.draw(rng)
            new.append(replace(c, **params))
        out.append(new)
    return out


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def stateful_schedule(
    segments: list[Segment],
    seq_len: int,
    lanes: int,
    seed: int,
    epoch: int,
    augment: Augment | None = None,
) -> list[list[Chunk]]:
    """steps[i][b]: the chunk lane b trains on at step i of this epoch."""
    rng = _rng(seed, epoch)
    aug = augment or Augment()
    chunks: list[Chunk] = []
    for k in rng.permutation(len(segments)):
        s = segments[k]
        step = aug.stride(rng)
        if (seq_len - 1) * step >= len(s):  # too short to hold one chunk this sparse
            step = 1
        hop = seq_len * step  # log rows from one chunk's start to the next's
        phase = int(rng.integers(0, hop)) if epoch > 0 and len(s) > 2 * hop else 0
        starts = range(s.start + phase, s.stop - (seq_len - 1) * step, hop)
        chunks += [Chunk(s.drive, a, j == 0, stride=step) for j, a in enumerate(starts)]
    per_lane = len(chunks) // lanes
    if per_lane < 1:
        raise SteertimeError(
            f"only {len(chunks)} chunks of {seq_len} frames for {lanes} lanes: "
            "lower train.batch_size or train.seq_len, or use more data"
        )
    lane = [chunks[b * per_lane : (b + 1) * per_lane] for b in range(lanes)]
    for b in range(lanes):  # a lane's first chunk never inherits another lane's state
        lane[b][0] = replace(lane[b][0], reset=True)
    lane = _augment(lane, augment, rng)
    return [[lane[b][i] for b in range(lanes)] for i in range(per_lane)]


def window_schedule(
    segments: list[Segment],
    length: int,
    stride: int,
    batch: int,
    seed: int,
    epoch: int,
    augment: Augment | None = None,
) -> list[list[Chunk]]:
    """Shuffled windows of `length` frames (one per `stride` frames of data)."""
    rng = _rng(seed, epoch)
    aug = augment or Augment()
    wins = []
    for s in segments:
        step = aug.stride(rng)
        if (length - 1) * step >= len(s):
            step = 1
        phase = int(rng.integers(0, stride * step))
        starts = range(s.start + phase, s.stop - (length - 1) * step, stride * step)
        wins += [Chunk(s.drive, a, True, stride=step) for a in starts]
    if len(wins) < batch:
        raise SteertimeError(f"only {len(wins)} windows of {length} frames for batch {batch}")
    order = rng.permutation(len(wins))
    n = len(wins) // batch
    steps = [[wins[order[i * batch + b]] for b in range(batch)] for i in range(n)]
    return _augment(steps, augment, rng)  # every window resets: one draw each


def smoothed(x: np.ndarray, k: int) -> np.ndarray:
    """Centred mean of the 2k+1 values around each row; near the ends, of those that exist."""
    if k <= 0 or len(x) == 0:
        return x
    kernel = np.ones(2 * k + 1)
    sums = np.convolve(x, kernel, mode="same")
    counts = np.convolve(np.ones(len(x)), kernel, mode="same")
    return (sums / counts).astype(np.float32)


class BatchReader:
    """Reads a step's chunks from the cache into reusable buffers."""

    def __init__(
        self,
        cache: Cache,
        outputs: list[str],
        length: int,
        rows: int,
        features=None,
        lead: int = 0,
        faults: tuple[FaultSpec, ...] = (),
        missing_input: bool = False,
        smooth: int = 0,
        aux_leads: tuple[int, ...] = (),
        teacher: Teacher | None = None,
        shift_steer: float = 0.0,
    ) -> None:
        d0 = cache.drives[0]
        self.shift_steer = shift_steer
        self._lock: dict[int, tuple[float, float]] = {}  # steering range per drive
        self.cache, self.outputs, self.length, self.features = cache, outputs, length, features
        self.lead, self.smooth, self.aux_leads = lead, smooth, tuple(aux_leads)
        self.teacher = teacher
        # set by read(): every output's target `aux_leads[j]` frames further on
        self.aux_targets = np.empty((rows, length, len(self.aux_leads), len(outputs)), np.float32)
        self._targets: dict[tuple[int, str], np.ndarray] = {}  # smoothed and/or distilled
        # A model without the flag cannot be told a frame is missing (the predictor holds
        # its last output there instead): it trains on the faults that leave an image.
        self.faults = tuple(f for f in faults if missing_input or CODES[f.kind] not in BLANKING)
        self.missing = np.zeros((rows, length), bool)  # set by read(): frames with no image
        self._schedules: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        if features is None:
            self.frames = np.empty((rows, length, d0.height, d0.width, 3), np.uint8)
        else:  # precomputed encoder outputs instead of frames
            self.frames = np.empty((rows, length, features.dim), np.float32)
        self.targets = np.empty((rows, length, len(outputs)), np.float32)

    def read(self, chunks: list[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> frames (B, T, H, W, 3) uint8 (or features (B, T, E)), targets (B, T, K) in
        native units, reset (B,) bool."""
        for b, c in enumerate(chunks):
            d = self.cache.drives[c.drive]
            stop = c.start + (self.length - 1) * c.stride + 1  # one past the last log row
            if self.features is None and c.stride == 1:
                d.read_frames(c.start, stop, out=self.frames[b])
            elif self.features is None:
                self.frames[b] = d.read_frames(c.start, stop)[:: c.stride]
            else:  # mirrored sequences read the mirrored frames' features
                self.frames[b] = self.features.read(c.drive, c.start, stop, c.flip)[:: c.stride]
            rows = lead_rows(c.start, stop, self.lead, d.n, c.stride)
            later = [
                lead_rows(c.start, stop, self.lead + extra, d.n, c.stride)
                for extra in self.aux_leads
            ]
            for k, name in enumerate(self.outputs):
                sign = -1.0 if c.flip and name in ANTISYMMETRIC else 1.0
                signal = self._signal(c.drive, name)
                self.targets[b, :, k] = sign * signal[rows]
                for j, r in enumerate(later):
                    self.aux_targets[b, :, j, k] = sign * signal[r]
                if name == "steering" and self.shift_steer and c.dx:
                    self._yawed(b, k, c.drive, self.shift_steer * c.dx)
            if c.flip and self.features is None:
                self.frames[b] = self.frames[b][:, :, ::-1].copy()  # (T, H, W, 3) mirrored
            if c.dy or c.dx:
                self.frames[b] = shifted(self.frames[b], c.dy, c.dx)
            if c.gain != 1.0 or c.contrast != 1.0 or c.saturation != 1.0 or c.tint != (1, 1, 1):
                self.frames[b] = relit(self.frames[b], c.gain, c.contrast, c.saturation, c.tint)
            if c.blur > 1:  # frames only: a features run refuses data.blur
                self.frames[b] = blurred(self.frames[b], c.blur)
            self.missing[b] = False
            if self.faults and c.fault_seed >= 0 and self.features is None:
                codes, starts = self._schedule(c.drive, c.fault_seed)
                sl = slice(c.start, stop, c.stride)
                _, self.missing[b] = apply_offline(
                    self.frames[b], codes[sl], starts[sl], c.fault_seed
                )
        if any(c.mix != 1.0 for c in chunks):  # after every lane is read: lanes blend
            self.frames[: len(chunks)] = mixed(self.frames[: len(chunks)], chunks)
            self.targets[: len(chunks)] = mixed(self.targets[: len(chunks)], chunks)
            self.aux_targets[: len(chunks)] = mixed(self.aux_targets[: len(chunks)], chunks)
        reset = np.array([c.reset for c in chunks])
        return self.frames, self.targets, reset

    def _yawed(self, b: int, k: int, drive: int, delta: float) -> None:
        # the logged range bounds the correction: no wheel turns past its lock
        if drive not in self._lock:
            raw = self.cache.drives[drive].signals["steering"]
            lo, hi = float(np.min(raw)), float(np.max(raw))
            self._lock[drive] = (min(lo, -hi), max(hi, -lo))  # symmetric: mirrored lanes fit
        lo, hi = self._lock[drive]
        self.targets[b, :, k] = np.clip(self.targets[b, :, k] + delta, lo, hi)
        self.aux_targets[b, :, :, k] = np.clip(self.aux_targets[b, :, :, k] + delta, lo, hi)

    def _signal(self, drive: int, name: str) -> np.ndarray:
        raw = self.cache.drives[drive].signals[name]
        if not self.smooth and self.teacher is None:
            return raw
        key = (drive, name)
        if key not in self._targets:
            values = smoothed(np.asarray(raw, np.float64), self.smooth) if self.smooth else raw
            if self.teacher is not None:
                values = self.teacher.blend(drive, name, values)
            self._targets[key] = values
        return self._targets[key]

    def _schedule(self, drive: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes, event starts) over a whole drive for one run of chunks; kept while its
        chunks are read (a few per lane), then dropped."""
        key = (drive, seed)
        if key not in self._schedules:
            if len(self._schedules) > 256:
                self._schedules.clear()
            d = self.cache.drives[drive]
            rate = float(self.cache.manifest["drives"][drive].get("rate_hz") or 10.0)
            codes = fault_schedule(d.n, rate, list(self.faults), np.random.default_rng(seed))
            self._schedules[key] = (codes, event_starts(codes))
        return self._schedules[key]
