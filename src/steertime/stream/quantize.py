"""int8 export: onnxruntime static quantization, calibrated on frames of the training cache.

Static quantization fixes each activation's int8 range ahead of time from calibration
inputs. A streaming step's inputs are a frame *and the state*, so the calibration samples
are taken the way the car produces them: the float model streams over consecutive frames
of the run's training segments from a zero state, and every step's (frame, state) is one
sample. Ranges from zero states alone would clip the state the car actually carries.

Only the convolutions are quantized (weights int8 per output channel, activations uint8,
QDQ format, which onnxruntime fuses into integer kernels): they are most of a step's
arithmetic. The recurrent core and the heads stay float32, because their error feeds back
through the state frame after frame: on a real tub, quantizing every operator moved
held-out steering RMSE by +10%, the convolutions alone by +0.04% (docs/benchmarks.md).
A temporal convolution's (`cnn_tcn`) 1D levels are convolutions and are quantized too:
its state is its own float inputs, which they never write, so no error feeds back.
The speed-up is largest on ARM (a Raspberry Pi's integer dot products); x86 without VNNI
gains less.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from steertime.atomic import atomic_file, write_json
from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models.checkpoint import read_run_meta
from steertime.stream.export import OnnxPredictor, export_onnx

CALIBRATION_FRAMES = 400
QUANTIZED_OPS = ["Conv"]  # 2D and 3D convolutions; see the module docstring
CHUNK = 100  # consecutive frames per calibration stretch: enough for the state to settle


def calibration_samples(
    float_folder: Path, cache: Cache, frames: int = CALIBRATION_FRAMES, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """(frame, state) inputs of the float step over stretches of the training segments."""
    segs = [s for s in cache.segments("train") if len(s) > 0] or cache.segments()
    if not segs:
        raise SteertimeError(f"{cache.path}: the cache has no frames to calibrate on")
    p = OnnxPredictor(float_folder)
    rng = np.random.default_rng(seed)
    samples: list[dict[str, np.ndarray]] = []
    for i in rng.permutation(len(segs)).tolist() * (frames // CHUNK + 1):
        if len(samples) >= frames:
            break
        seg = segs[i]
        n = min(CHUNK, len(seg), frames - len(samples))
        a = seg.start + int(rng.integers(0, len(seg) - n + 1))
        p.reset()
        for f in cache.drives[seg.drive].read_frames(a, a + n):
            # A model trained with the frame-missing flag takes it as an input: calibrate on
            # frames that arrived (the flag is a float32 input the quantizer leaves alone).
            flag = {"missing": np.zeros((1, 1), np.float32)} if p.missing_input else {}
            samples.append({"frame": f[None], **flag, **p.state})
            p._run(f)
    return samples


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.it, None)


def export_int8(
    run: str | Path,
    out: str | Path,
    cache: str | Path | None = None,
    frames: int = CALIBRATION_FRAMES,
) -> Path:
    """Export a run's best model as an int8 step to `out/model.onnx` + `out/model.json`.

    `cache`: the frames to calibrate on; default the cache the run was trained on."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_run_meta(run)
    source = cache or meta.data_path
    if not source:
        raise SteertimeError(f"{run}: the run records no training cache; pass --calibrate CACHE")
    c = Cache.open(source)
    if c.frame != meta.require_frame():
        raise SteertimeError(
            f"{source}: its frames ({c.frame.height}x{c.frame.width}) are not the run's "
            f"({meta.frame.height}x{meta.frame.width}); calibrate on the training cache"
        )
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(run, tmp / "float")
        samples = calibration_samples(tmp / "float", c, frames)
        try:  # shape inference + graph clean-up, as onnxruntime recommends before quantizing
            quant_pre_process(str(tmp / "float" / "model.onnx"), str(tmp / "pre.onnx"))
            src = tmp / "pre.onnx"
        except Exception:  # some graphs defeat its symbolic shape inference; quantize as is
            src = tmp / "float" / "model.onnx"
        quantize_static(
            str(src),
            str(tmp / "int8.onnx"),
            CalibrationReader(samples),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=QUANTIZED_OPS,
        )
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "model.onnx") as f:
            f.write((tmp / "int8.onnx").read_bytes())
        sidecar = json.loads((tmp / "float" / "model.json").read_text())
    sidecar["quantization"] = {
        "type": "int8",
        "method": "onnxruntime static, QDQ, per-channel int8 weights, uint8 activations",
        "ops": QUANTIZED_OPS,
        "calibration": {"cache": str(c.path), "frames": len(samples), "split": "train"},
    }
    write_json(out / "model.json", sidecar)
    c.close()
    return out
