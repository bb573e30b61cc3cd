"""The streaming predictor: one camera frame in, named outputs in physical units out.

    p = Predictor.from_run("runs/lstm")
    out = p.step(frame, t)      # {"t", "status", "steering", "steering_rad", "speed", ...}
    p.reset()

It owns the model's state (recurrent state, 3D-conv frame buffer, previous outputs) and
applies the preprocessing recorded at training time (crop, size, colour), so callers
never re-implement it. Real streams are messy:
- a timestamp gap longer than `max_gap_s` resets the state (status "reset");
- a duplicated or earlier timestamp is refused (StreamError);
- a frame of another size is rescaled (crop rows scaled with it) when its aspect ratio
  matches the training camera, else refused;
- a frame that cannot be decoded is skipped (status "skipped") and the state is kept;
- `step(None, t)` is a frame that never arrived. With `fault_gate` on, a frame that is
  black or glaring (`data.faults.is_blank`) or an exact repeat of the previous one (a
  frozen camera) counts as missing too. A model trained with the frame-missing flag
  (`missing_input`) rolls its state forward on memory (status "missing"); any other
  model holds its last outputs (status "held"), the single-frame equivalent.

A run trained with `train.spread` also gives `<name>_std`. With `adapt_gamma` > 0, each
spread recalibrates itself online from the truths the caller reports after the fact
(`observe({"speed": measured})`, `steertime.stream.adaptive`): only outputs the caller
can measure change; `reset()` starts them again from the validation calibration.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from steertime.data.drive import DEFAULT_MAX_GAP_S
from steertime.data.faults import is_blank
from steertime.data.preprocess import FrameSizeMismatch, FrameSpec, spec_for_size
from steertime.errors import SteertimeError
from steertime.models import OutputLayout
from steertime.models.checkpoint import RunMeta, load_model
from steertime.stream.adaptive import AdaptiveScale
from steertime.stream.threads import DEFAULT_THREADS, torch_threads


class StreamError(SteertimeError):
    pass


class FrameSizeError(StreamError):
    """One frame of another aspect ratio: `predict` skips it and reports its row."""


class StreamingPredictor:
    """Everything but the network: time, preprocessing, bad frames, output parsing."""

    def __init__(
        self,
        layout: OutputLayout,
        frame: FrameSpec,
        source_size: tuple[int, int] | list[int] | None,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        strict_size: bool = False,
        missing_input: bool = False,
        fault_gate: bool | None = None,
        adapt_gamma: float = 0.0,
    ) -> None:
        self.layout, self.frame, self.max_gap_s, self.strict_size = (
            layout,
            frame,
            max_gap_s,
            strict_size,
        )
        self.source_size = tuple(source_size) if source_size else None
        self.last_t: float | None = None
        self.missing_input = missing_input
        # Off by default for models without the flag: a night drive's dark frames or a
        # test's constant frames are real input to them, not a fault.
        self.fault_gate = missing_input if fault_gate is None else fault_gate
        self.last_out: dict[str, float] | None = None
        self._last_raw: np.ndarray | None = None
        if adapt_gamma and not layout.spread:
            raise StreamError("adapt_gamma needs a run trained with a spread (train.spread=true)")
        self.adapt = {n: AdaptiveScale(adapt_gamma) for n in layout.names} if adapt_gamma else {}

    # --- to be provided by the backend (PyTorch, onnxruntime) --------------------------
    def _reset_state(self) -> None:
        raise NotImplementedError

    def _run(self, frame: np.ndarray, missing: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 model-sized frame -> (K,) outputs in physical units; advances
        state. `missing`: the frame carries no image (only for `missing_input` models)."""
        raise NotImplementedError

    # --- public API --------------------------------------------------------------------
    def reset(self, calibration: bool = True) -> None:
        """Start again from a fresh state; `calibration=False` keeps the spreads' online
        scales (the scene jumped, the car and its sensors did not change)."""
        self._reset_state()
        self.last_t = None
        self.last_out, self._last_raw = None, None
        if calibration:
            for a in self.adapt.values():
                a.reset()

    def observe(self, truth: dict[str, float]) -> dict[str, bool]:
        """Report the true values of the last step's outputs once known (e.g. the
        measured speed); each one's spread rescales for the next steps. Returns, per name,
        whether the last 90% interval missed it."""
        if not self.adapt:
            raise StreamError("observe() needs adapt_gamma > 0 (and a run with a spread)")
        unknown = sorted(set(truth) - set(self.adapt))
        if unknown:
            raise StreamError(
                f"observe(): no output named {unknown}; outputs: {sorted(self.adapt)}"
            )
        if self.last_out is None:  # nothing predicted since the last reset
            return {}
        missed = {}
        for name, value in truth.items():
            v = float(value)
            if not math.isfinite(v):
                raise StreamError(f"observe(): {name}={value!r} is not finite")
            out = self.last_out
            missed[name] = self.adapt[name].update(out[name], out[f"{name}_std"], v)
        return missed

    def _parse(self, y: np.ndarray) -> dict[str, float]:
        """(K,) or (2K,) physical outputs -> named floats, spreads rescaled online."""
        out = {k: float(v) for k, v in self.layout.parse(y).items()}
        for name, a in self.adapt.items():
            out[f"{name}_std"] *= a.scale
        return out

    def _fault(self, image: np.ndarray | None) -> str | None:
        """Why this frame carries no usable image (None: it does)."""
        if image is None:
            return "dropped"
        if not self.fault_gate:
            return None
        frozen = self._last_raw is not None and np.array_equal(image, self._last_raw)
        self._last_raw = image.copy()  # a camera may refill the same buffer
        if frozen:
            return "frozen"
        return "blank" if is_blank(image) else None

    def _missing_step(self, t: float, status: str, fault: str) -> dict:
        if self.missing_input:
            blank = np.zeros((self.frame.height, self.frame.width, 3), np.uint8)
            self.last_out = self._parse(self._run(blank, missing=True))
            kind = "missing" if status == "ok" else status  # a reset says so first
            return {"t": t, "status": kind, "fault": fault, **self.last_out}
        if self.last_out is None:  # nothing to hold yet: the training mean
            mean = self.layout.clip(np.asarray(self.layout.mean, np.float32))
            held = {k: float(v) for k, v in self.layout.parse(mean).items()}
        else:
            held = self.last_out
        return {"t": t, "status": "held" if status == "ok" else status, "fault": fault, **held}

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """A raw camera frame -> the model's (H, W, 3) uint8 input, as at training time."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise StreamError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        h0, w0 = self.source_size or (0, 0)
        trained = f"; the model was trained on {w0}x{h0} frames" if h0 else ""
        hint = f"{trained} (crop or resize it the way the training data was)"
        if self.strict_size and self.source_size and frame.shape[:2] != self.source_size:
            raise FrameSizeError(
                f"frame is {frame.shape[1]}x{frame.shape[0]} (strict_size: no rescaling){hint}"
            )
        try:
            return spec_for_size(self.frame, frame.shape[:2], self.source_size).apply(frame)
        except FrameSizeMismatch as e:
            raise FrameSizeError(f"{e}{hint}") from None

    def step(self, frame: np.ndarray | bytes | str | Path | None, timestamp: float) -> dict:
        """Advance one frame. `frame`: RGB array, encoded image bytes, an image path, or
        None for a frame that never arrived (time moves on without it)."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float | np.number):
            raise StreamError(f"timestamp must be a number of seconds, got {timestamp!r}")
        if frame is not None and not isinstance(frame, np.ndarray | bytes | bytearray | str | Path):
            raise StreamError(
                "frame must be an (H, W, 3) uint8 array, encoded image bytes, an image "
                f"path or None (no frame arrived), got {type(frame).__name__}"
            )
        t = float(timestamp)
        if not math.isfinite(t):
            raise StreamError(f"timestamp {timestamp!r} is not finite")
        if self.last_t is not None and t <= self.last_t:
            what = "duplicated" if t == self.last_t else "earlier than the previous one"
            raise StreamError(f"timestamp {t} is {what} ({self.last_t}); frames must move forward")
        status = "ok"
        if self.last_t is not None and t - self.last_t > self.max_gap_s:
            self._reset_state()
            self.last_out, self._last_raw = None, None
            status = "reset"
        try:
            image = None if frame is None else _decode(frame)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return {"t": t, "status": "skipped", "error": f"undecodable frame ({e})"}
        fault = self._fault(image)
        if fault is not None:
            self.last_t = t
            return self._missing_step(t, status, fault)
        x = self.preprocess(image)
        self.last_t = t
        self.last_out = self._parse(self._run(x))
        return {"t": t, "status": status, **self.last_out}


def tell_truth(predictor: object, values: dict[str, float]) -> None:
    """After a step, hand an `adapt_gamma` predictor the recorded truth of its outputs
    (those it predicts, finite ones only); a no-op for anything else that steps (another
    predictor, a simulator's stand-in driver), so callers need not ask which it is."""
    adapt = getattr(predictor, "adapt", None)
    if adapt:
        seen = {n: v for n, v in values.items() if n in adapt and math.isfinite(v)}
        if seen:
            predictor.observe(seen)


def _decode(frame) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        return frame
    data = frame if isinstance(frame, bytes | bytearray) else Path(frame).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


class Predictor(StreamingPredictor):
    """PyTorch backend. `threads`: intra-op threads per step (default 1, see
    `steertime.stream.threads`; 0 keeps torch's setting)."""

    def __init__(
        self,
        model,
        meta: RunMeta | dict,
        device: str = "cpu",
        threads: int = DEFAULT_THREADS,
        **kw,
    ) -> None:
        if not isinstance(meta, RunMeta):
            meta = RunMeta.parse(meta)
        kw.setdefault("missing_input", bool(model.missing_input))
        super().__init__(meta.layout, meta.require_frame(), meta.source_size, **kw)
        self.model, self.meta, self.device = model.eval(), meta, torch.device(device)
        self.threads = threads
        self._reset_state()

    @classmethod
    def from_run(
        cls, path: str | Path, device: str = "cpu", threads: int = DEFAULT_THREADS, **kw
    ) -> Predictor:
        """Load a run folder (its best checkpoint) or a checkpoint folder."""
        model, meta = load_model(path, device)
        return cls(model, meta, device, threads, **kw)

    def _reset_state(self) -> None:
        self.state = self.model.init_state(1, self.device)

    @torch.no_grad()
    def _run(self, frame: np.ndarray, missing: bool = False) -> np.ndarray:
        frame = np.require(frame, requirements=["C", "W"])  # torch wants writable memory
        x = torch.from_numpy(frame).to(self.device)[None, None]  # (1, 1, H, W, 3)
        flag = torch.tensor([[missing]], device=self.device) if self.missing_input else None
        with torch_threads(self.threads):
            y, self.state = self.model(x, self.state, flag)
        return self.layout.physical(y[0, 0].float().cpu().numpy())  # (K,) or (2K,)
