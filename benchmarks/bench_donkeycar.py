"""The Donkeycar part in Donkeycar's own Vehicle loop: per-frame cost, int8, a 20 Hz replay.

    python benchmarks/bench_donkeycar.py --run RUN --heldout CACHE --out result.json \\
        [--peer-python /tmp/dkvenv/bin/python] [--sections int8,part,peer,replay] \\
        [--replay-minutes 5]

- int8: `export_int8` (calibrated on the run's training cache) against the float32 export:
  steering RMSE over every frame of `--heldout` (a cache the run never trained on, streamed
  drive by drive from a fresh state), and the median model step at 1 thread; also every
  operator quantized, to show why only the convolutions are;
- part: `SteertimePilot` (onnxruntime float32, int8, and the PyTorch fallback) added to a
  `donkeycar.vehicle.Vehicle` as manage.py adds it, behind a camera part that hands out
  the real tub's 160x120 frames (decoded beforehand, as a camera delivers arrays); the
  cost per frame is what Donkeycar's own PartProfiler records for the pilot part;
- peer: Donkeycar's `rnn` and `linear` through `KerasPilot.run` in the same loop on the
  same frames (`peer_donkeycar/latency.py`, in Donkeycar's TensorFlow venv);
- replay: the float32 part in a Vehicle at rate_hz=20 for `--replay-minutes`, the tub's
  frames in a loop; a missed deadline is a loop whose parts took longer than 50 ms.

Everything at 1 thread (the part's default). Needs `pip install --no-deps donkeycar==5.3.0`
in steertime's venv (see docs/donkeycar.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from steertime.data import Cache
from steertime.integrations.donkeycar import SteertimePilot
from steertime.stream import OnnxPredictor, export_onnx
from steertime.stream.quantize import CalibrationReader, calibration_samples, export_int8

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RATE_HZ = 20


def tub_frames(tub: Path, n: int) -> list[np.ndarray]:
    """The first n frames of a tub in catalog order, RGB arrays as a camera part gives them."""
    data = tub / "data"
    meta = json.loads((data / "manifest.json").read_text().splitlines()[4])
    out: list[np.ndarray] = []
    for name in meta["paths"]:
        for line in (data / name).read_text().splitlines():
            if line.strip() and len(out) < n:
                with Image.open(data / "images" / json.loads(line)["cam/image_array"]) as im:
                    out.append(np.asarray(im.convert("RGB")))
    return out


def heldout_rmse_and_step(folder: Path, heldout: Cache) -> tuple[float, float, np.ndarray]:
    """Steering RMSE over every held-out frame, median ms of one step, the predictions."""
    p = OnnxPredictor(folder, threads=1)
    k = p.layout.index("steering")
    preds, truth, times = [], [], []
    for d in heldout.drives:
        p.reset()
        for i, f in enumerate(d.read_frames(0, d.n)):
            t0 = time.perf_counter()
            y = p._run(f)
            times.append(time.perf_counter() - t0)
            preds.append(y[k])
            truth.append(d.signals["steering"][i])
    preds, truth = np.array(preds), np.array(truth)
    return float(np.sqrt(np.mean((preds - truth) ** 2))), 1000 * float(np.median(times)), preds


def quantize_everything(float_folder: Path, run_cache: Cache, out: Path) -> Path:
    """The ablation: every operator quantized (the shipped export quantizes Conv only)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text((float_folder / "model.json").read_text())
    quantize_static(
        str(float_folder / "model.onnx"),
        str(out / "model.onnx"),
        CalibrationReader(calibration_samples(float_folder, run_cache)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    return out


def section_int8(run: Path, heldout: Path, work: Path) -> dict:
    f32, i8 = export_onnx(run, work / "f32"), export_int8(run, work / "int8")
    meta = json.loads((i8 / "model.json").read_text())
    every = quantize_everything(
        f32, Cache.open(meta["quantization"]["calibration"]["cache"]), work / "int8_all"
    )
    h = Cache.open(heldout)
    res = {"heldout_frames": h.n_frames, "calibration": meta["quantization"]["calibration"]}
    base = None
    for name, folder in (("float32", f32), ("int8", i8), ("int8_every_op", every)):
        rmse, ms, preds = heldout_rmse_and_step(folder, h)
        base = base if base is not None else (rmse, ms, preds)
        res[name] = {
            "steering_rmse": rmse,
            "rmse_change_rel": rmse / base[0] - 1,
            "max_abs_diff_vs_float32": float(np.abs(preds - base[2]).max()),
            "step_ms_median": ms,
            "speedup_vs_float32": base[1] / ms,
        }
        print(name, res[name], flush=True)
    return res


class Camera:
    """Hands out pre-decoded frames in a loop, as a camera part delivers arrays."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.i = frames, 0

    def run(self) -> np.ndarray:
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        return f


def _vehicle(frames: list[np.ndarray], pilot, rate_hz: float, loops: int, first=(), last=()):
    """Donkeycar's loop as manage.py builds it (camera -> pilot under `run_pilot`), with
    `first`/`last` parts around it (timers); returns (vehicle, loops run, seconds)."""
    from donkeycar.vehicle import Vehicle

    v = Vehicle()
    v.mem.put(["run_pilot"], [True])
    for part in first:
        v.add(part)
    v.add(Camera(frames), outputs=["cam/image_array"])
    v.add(
        pilot,
        inputs=["cam/image_array"],
        outputs=["pilot/angle", "pilot/throttle"],
        run_condition="run_pilot",
    )
    for part in last:
        v.add(part)
    count, secs = v.start(rate_hz=rate_hz, max_loop_count=loops)
    return v, count, secs


def section_part(run: Path, work: Path, frames: list[np.ndarray]) -> dict:
    f32 = work / "f32" if (work / "f32").is_dir() else export_onnx(run, work / "f32")
    i8 = work / "int8" if (work / "int8").is_dir() else export_int8(run, work / "int8")
    res = {"frames": len(frames), "frame_size": list(frames[0].shape)}
    for name, path, backend in (
        ("onnx_float32", f32, "onnx"),
        ("onnx_int8", i8, "onnx"),
        ("torch_float32", run, "torch"),
    ):
        pilot = SteertimePilot(path, backend=backend, threads=1)
        v, _, _ = _vehicle(frames, pilot, 10_000, len(frames))
        times = np.array(v.profiler.records[pilot]["times"][20:])  # after the first calls
        res[name] = {
            "ms_median": 1000 * float(np.median(times)),
            "ms_p90": 1000 * float(np.percentile(times, 90)),
            "ms_p99": 1000 * float(np.percentile(times, 99)),
        }
        print(name, res[name], flush=True)
    return res


def section_peer(python: str, tub: Path, n: int, work: Path) -> dict:
    out = work / "peer_latency.json"
    cmd = [python, str(ROOT / "benchmarks/peer_donkeycar/latency.py"), "--tub", str(tub)]
    cmd += ["--models", "rnn,linear", "--frames", str(n), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads(out.read_text())


class LoopStart:
    def run(self) -> None:
        self.t = time.perf_counter()


class Deadline:
    """Last part of the loop: how long the loop's parts took since LoopStart."""

    def __init__(self, start: LoopStart) -> None:
        self.start, self.took = start, []

    def run(self) -> None:
        self.took.append(time.perf_counter() - self.start.t)


def section_replay(run: Path, work: Path, frames: list[np.ndarray], minutes: float) -> dict:
    f32 = work / "f32" if (work / "f32").is_dir() else export_onnx(run, work / "f32")
    pilot = SteertimePilot(f32, threads=1)
    start = LoopStart()
    deadline = Deadline(start)
    loops = int(minutes * 60 * RATE_HZ)
    v, count, secs = _vehicle(frames, pilot, RATE_HZ, loops, first=[start], last=[deadline])
    took = np.array(deadline.took)
    pilot_times = np.array(v.profiler.records[pilot]["times"][1:])
    res = {
        "loops": int(count),
        "seconds": float(secs),
        "achieved_hz": count / secs,
        "missed_deadlines": int((took > 1 / RATE_HZ).sum()),
        "loop_ms_median": 1000 * float(np.median(took)),
        "loop_ms_max": 1000 * float(took.max()),
        "pilot_ms_median": 1000 * float(np.median(pilot_times)),
        "pilot_ms_p99": 1000 * float(np.percentile(pilot_times, 99)),
        "pilot_ms_max": 1000 * float(pilot_times.max()),
        "frames_skipped": pilot.skipped,
    }
    print("replay", res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained cnn_lstm run (120x160)")
    ap.add_argument("--heldout", type=Path, help="a cache the run never trained on (int8)")
    ap.add_argument("--tub", type=Path, default=SHARED / "donkey_rc_tub")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--peer-python", default="/tmp/dkvenv/bin/python")
    ap.add_argument("--peer-frames", type=int, default=400)
    ap.add_argument("--sections", default="int8,part,peer,replay")
    ap.add_argument("--replay-minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    logging.getLogger("donkeycar").setLevel(logging.WARNING)  # its per-part tables

    sections = a.sections.split(",")
    res: dict = {"run": str(a.run), "threads": 1}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = tub_frames(a.tub, a.frames)
        if "int8" in sections:
            res["int8"] = section_int8(a.run, a.heldout, work)
        if "part" in sections:
            res["part"] = section_part(a.run, work, frames)
        if "peer" in sections:
            res["peer"] = section_peer(a.peer_python, a.tub, a.peer_frames, work)
            print("peer", res["peer"], flush=True)
        if "part" in sections and "peer" in sections:
            res["rnn_over_part"] = (
                res["peer"]["rnn"]["ms_median"] / res["part"]["onnx_float32"]["ms_median"]
            )
        if "replay" in sections:
            res["replay"] = section_replay(a.run, work, frames, a.replay_minutes)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
