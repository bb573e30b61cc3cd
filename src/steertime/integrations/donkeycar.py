"""A Donkeycar part: a trained steertime model drives the car.

In `~/mycar/manage.py` (Donkeycar 5.3), beside the other pilot parts:

    from steertime.integrations.donkeycar import SteertimePilot
    V.add(SteertimePilot("~/models/lstm"), inputs=['cam/image_array'],
          outputs=['pilot/angle', 'pilot/throttle'], run_condition='run_pilot')

The part follows Donkeycar's part interface (`run(img_arr) -> (angle, throttle)`,
`shutdown()`) and imports nothing from Donkeycar, so it is tested inside Donkeycar's own
`Vehicle` loop but costs nothing to import without it. Everything else is the streaming
predictor's (`steertime.stream`): the preprocessing recorded with the run, the recurrent
state carried from frame to frame, onnxruntime (or PyTorch) on one thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from steertime.data.drive import DEFAULT_MAX_GAP_S
from steertime.errors import SteertimeError
from steertime.stream.predictor import StreamingPredictor
from steertime.stream.threads import DEFAULT_THREADS

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
WARN_EVERY = 100  # a dead camera at 20 Hz must not flood the log: first skip, then 1 in 100


def _export_folder(path: Path) -> Path | None:
    """`path` itself when it is a `steertime export` folder, else the run's `export/`."""
    for folder in (path, path / "export"):
        if (folder / "model.onnx").is_file() and (folder / "model.json").is_file():
            return folder
    return None


def _is_run(path: Path) -> bool:
    return (path / "meta.json").is_file() or (path / "checkpoints" / "best").is_dir()


def load_predictor(
    path: str | Path,
    backend: str = "auto",
    threads: int = DEFAULT_THREADS,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> StreamingPredictor:
    """The streaming predictor behind the part.

    `path`: an export folder (`model.onnx` + `model.json`), or a run folder (its
    `export/` if there is one, else its best checkpoint). `backend="auto"` prefers
    onnxruntime (about half PyTorch's step time at batch 1) and falls back to PyTorch when
    there is no export or onnxruntime is not installed."""
    if backend not in BACKENDS:
        raise SteertimeError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise SteertimeError(f"{path}: no such run or export folder")
    export, run = _export_folder(path), _is_run(path)
    if backend != "torch" and export is not None:
        try:
            from steertime.stream.export import OnnxPredictor

            if run and _older_than_checkpoint(export, path):
                log.warning(
                    "%s is older than the run's checkpoint: re-run steertime export", export
                )
            return OnnxPredictor(export, threads=threads, max_gap_s=max_gap_s)
        except ImportError:
            if backend == "onnx" or not run:
                raise SteertimeError(
                    "onnxruntime is not installed (pip install onnxruntime)"
                ) from None
    if backend == "onnx":
        raise SteertimeError(
            f"{path}: no model.onnx here or in {path / 'export'}; run steertime export {path}"
        )
    if not run:
        raise SteertimeError(f"{path}: neither a steertime run nor an export folder")
    from steertime.stream.predictor import Predictor

    return Predictor.from_run(path, threads=threads, max_gap_s=max_gap_s)


def _older_than_checkpoint(export: Path, run: Path) -> bool:
    weights = run / "checkpoints" / "best" / "model.safetensors"
    return weights.is_file() and weights.stat().st_mtime > (export / "model.onnx").stat().st_mtime


class SteertimePilot:
    """Donkeycar part: camera frame in, `(angle, throttle)` out.

    - `path`: a run folder or an export folder (see `load_predictor`);
    - `throttle`: a constant throttle; without it the model's `throttle` output is used
      when it predicts one, else the part returns `None` (Donkeycar's `DriveMode` then
      drives at zero throttle in `local` mode; `local_angle` uses the user's throttle);
    - `full_lock`: for a model whose steering is in physical units (degrees of a real
      car's wheel), the value that maps to Donkeycar's angle 1;
    - `max_gap_s`: frames stopping for longer than this reset the recurrent state. Donkeycar
      tells a part nothing when the driver switches to the pilot (`run_condition` just
      stops calling it), so a time gap is the only sign that the stream was broken. The
      default is the gap at which `steertime prepare` splits drives, so the model never
      saw its state carried across a longer one;
    - `clock`: seconds, monotonic (tests and replays pass the recording's clock).

    Angles are clipped to [-1, 1], as are throttles from the model. A bad frame (None, not
    an RGB uint8 array, a size of another aspect ratio than the training camera's) is
    skipped with a warning: `run` returns `(None, None)`, the state is kept, and the
    vehicle loop goes on.
    """

    def __init__(
        self,
        path: str | Path,
        throttle: float | None = None,
        backend: str = "auto",
        threads: int = DEFAULT_THREADS,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        full_lock: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.predictor = load_predictor(path, backend, threads, max_gap_s)
        layout = self.predictor.layout
        if "steering" not in layout.names:
            raise SteertimeError(f"{path}: the model predicts no steering ({layout.names})")
        unit = _unit(layout, "steering")
        if full_lock is None and unit not in ("normalized", ""):
            raise SteertimeError(
                f"{path}: the model's steering is in {unit}, not Donkeycar's [-1, 1]; "
                f"pass full_lock=<{unit} at full lock>"
            )
        if full_lock is not None and not (math.isfinite(full_lock) and full_lock > 0):
            raise SteertimeError(f"full_lock must be a positive number, got {full_lock}")
        if throttle is not None and not -1 <= throttle <= 1:
            raise SteertimeError(f"throttle must be in [-1, 1], got {throttle}")
        self.full_lock = full_lock or 1.0
        self.throttle = throttle
        self.model_throttle = "throttle" in layout.names
        if throttle is None and not self.model_throttle:
            log.warning(
                "%s predicts no throttle and no throttle= was given: pilot/throttle is None "
                "(zero in Donkeycar's local mode; local_angle uses the user's)",
                path,
            )
        self.clock = clock
        self.last_t: float | None = None
        self.frames = self.skipped = 0

    def run(self, img_arr: np.ndarray | None) -> tuple[float | None, float | None]:
        """One camera frame -> (angle in [-1, 1], throttle), or (None, None) if skipped."""
        t = self.clock()
        # The predictor refuses a repeated timestamp; a coarse clock must not stop the car.
        if self.last_t is not None and t <= self.last_t:
            t = self.last_t + 1e-6
        self.last_t = t
        problem = _frame_problem(img_arr)
        if problem is None:
            try:
                out = self.predictor.step(img_arr, t)
            except SteertimeError as e:
                problem = str(e)
        if problem is not None:
            return self._skip(problem)
        self.frames += 1
        angle = _clip(out["steering"] / self.full_lock)
        if self.throttle is not None:
            return angle, float(self.throttle)
        return angle, _clip(out["throttle"]) if self.model_throttle else None

    def _skip(self, why: str) -> tuple[None, None]:
        self.skipped += 1
        if self.skipped == 1 or self.skipped % WARN_EVERY == 0:
            log.warning("SteertimePilot skipped a frame (%d so far): %s", self.skipped, why)
        return None, None

    def reset(self) -> None:
        """Forget the recurrent state (the next frame starts like a car starting)."""
        self.predictor.reset()

    def shutdown(self) -> None:
        # Donkeycar calls this once when the vehicle stops; drop the runtime session.
        self.predictor = None


def _unit(layout, name: str) -> str:
    i = layout.index(name)
    return layout.units[i].get("name", "") if i < len(layout.units) else ""


def _frame_problem(img) -> str | None:
    if img is None:
        return "no frame (None): is the camera part running?"
    if not isinstance(img, np.ndarray):
        return f"frame is a {type(img).__name__}, not a numpy array"
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        return f"frame must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}"
    return None


def _clip(x: float) -> float:
    return float(min(1.0, max(-1.0, x)))
