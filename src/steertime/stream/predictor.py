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
- a frame that cannot be decoded is skipped (status "skipped") and the state is kept.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from steertime.data.drive import DEFAULT_MAX_GAP_S
from steertime.data.preprocess import FrameSpec
from steertime.errors import SteertimeError
from steertime.models import OutputLayout
from steertime.models.checkpoint import RunMeta, load_model
from steertime.stream.threads import DEFAULT_THREADS, torch_threads

ASPECT_TOLERANCE = 0.02


class StreamError(SteertimeError):
    pass


class StreamingPredictor:
    """Everything but the network: time, preprocessing, bad frames, output parsing."""

    def __init__(
        self,
        layout: OutputLayout,
        frame: FrameSpec,
        source_size: tuple[int, int] | list[int] | None,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        strict_size: bool = False,
    ) -> None:
        self.layout, self.frame, self.max_gap_s, self.strict_size = (
            layout,
            frame,
            max_gap_s,
            strict_size,
        )
        self.source_size = tuple(source_size) if source_size else None
        self.last_t: float | None = None

    # --- to be provided by the backend (PyTorch, onnxruntime) --------------------------
    def _reset_state(self) -> None:
        raise NotImplementedError

    def _run(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 model-sized frame -> (K,) outputs in physical units; advances state."""
        raise NotImplementedError

    # --- public API --------------------------------------------------------------------
    def reset(self) -> None:
        self._reset_state()
        self.last_t = None

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """A raw camera frame -> the model's (H, W, 3) uint8 input, as at training time."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise StreamError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        spec = self.frame
        if self.source_size and tuple(frame.shape[:2]) != self.source_size:
            h0, w0 = self.source_size
            h, w = frame.shape[:2]
            if self.strict_size or abs((w / h) / (w0 / h0) - 1) > ASPECT_TOLERANCE:
                raise StreamError(
                    f"frame is {w}x{h} but the model was trained on {w0}x{h0} frames "
                    "(different aspect ratio; crop or resize it the way the training data was)"
                )
            scale = h / h0
            spec = FrameSpec(
                spec.height,
                spec.width,
                round(spec.crop_top * scale),
                round(spec.crop_bottom * scale),
            )
        return spec.apply(frame)

    def step(self, frame: np.ndarray | bytes | str | Path, timestamp: float) -> dict:
        """Advance one frame. `frame`: RGB array, encoded image bytes, or an image path."""
        t = float(timestamp)
        if not math.isfinite(t):
            raise StreamError(f"timestamp {timestamp!r} is not finite")
        if self.last_t is not None and t <= self.last_t:
            what = "duplicated" if t == self.last_t else "earlier than the previous one"
            raise StreamError(f"timestamp {t} is {what} ({self.last_t}); frames must move forward")
        status = "ok"
        if self.last_t is not None and t - self.last_t > self.max_gap_s:
            self._reset_state()
            status = "reset"
        try:
            image = _decode(frame)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return {"t": t, "status": "skipped", "error": f"undecodable frame ({e})"}
        x = self.preprocess(image)
        self.last_t = t
        y = self._run(x)
        return {"t": t, "status": status, **{k: float(v) for k, v in self.layout.parse(y).items()}}


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
    def _run(self, frame: np.ndarray) -> np.ndarray:
        frame = np.require(frame, requirements=["C", "W"])  # torch wants writable memory
        x = torch.from_numpy(frame).to(self.device)[None, None]  # (1, 1, H, W, 3)
        with torch_threads(self.threads):
            y, self.state = self.model(x, self.state)
        return self.layout.denormalize(y[0, 0].float().cpu().numpy())
