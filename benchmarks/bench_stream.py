"""Streaming latency and `predict` throughput on this CPU.

    python benchmarks/bench_stream.py [--iters 300] [--models pilotnet,cnn_lstm,cnn_tcn]

Per-frame latency at batch 1 with 1 and 2 threads, median and p99, of one model step
(`pilotnet`, `cnn_lstm` and any other `--models`, each also with act=relu) in PyTorch and
onnxruntime, and each step's ratio to `pilotnet`'s; the same for re-running a window of
seq_len=10 frames from a fresh state for every prediction (what Donkeycar's RNN/3D models
do); and `steertime predict` over DeepTesla epoch01 (decode + preprocess + model).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from steertime.data import FrameSpec
from steertime.models import OutputLayout
from steertime.models.checkpoint import load_model, save_untrained_run
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.stream.run import bare_video_drive, predict_drives

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SEQ_LEN = 10
LAYOUT = OutputLayout(["steering", "speed"], [0.0, 10.0], [0.3, 2.0])


def make_run(root: Path, name: str, source_size, spec: FrameSpec, act: str = "elu") -> Path:
    return save_untrained_run(
        root / f"run_{name}_{act}", name, LAYOUT, spec.to_dict(), source_size, act=act
    )


class _Window(torch.nn.Module):
    """Donkeycar-style: the whole window from a fresh state, last output kept."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model(frames)[0][:, -1]


def export_window(run: Path, out: Path) -> Path:
    model, _ = load_model(run)
    x = torch.zeros(1, SEQ_LEN, 66, 200, 3, dtype=torch.uint8)
    torch.onnx.export(_Window(model.eval()), (x,), out, opset_version=17, dynamo=False)
    return out


def _stats(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def _ort_options(threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return opts


def time_interleaved(fns: dict, iters: int) -> dict:
    """Time every fn `iters` times, round-robin, so that machine drift hits all alike."""
    for fn in fns.values():
        for _ in range(20):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: _stats(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--models", default="pilotnet,cnn_lstm", help="pilotnet and cnn_lstm first")
    a = ap.parse_args()
    models = a.models.split(",")
    if models[:2] != ["pilotnet", "cnn_lstm"]:
        raise SystemExit("--models starts with pilotnet,cnn_lstm (the ratios are to them)")
    res: dict = {}
    frame = np.random.default_rng(0).integers(0, 255, (66, 200, 3), dtype=np.uint8)
    window = torch.from_numpy(np.stack([frame] * SEQ_LEN))[None]  # (1, T, H, W, 3)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        # `_relu`: the same models with act=relu, which onnxruntime fuses into the convs
        runs = {
            f"{n}{sfx}": make_run(tmp, n, (66, 200), FrameSpec(66, 200), act)
            for n in models
            for sfx, act in (("", "elu"), ("_relu", "relu"))
        }
        onnx = {n: export_onnx(r, tmp / f"onnx_{n}") for n, r in runs.items()}
        window_onnx = {
            n: export_window(runs[n], tmp / f"window_{n}.onnx")
            for n in ("cnn_lstm", "cnn_lstm_relu")
        }
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fns = {}
            for name, run in runs.items():
                p = Predictor.from_run(run)
                o = OnnxPredictor(onnx[name], threads=threads)
                fns[f"{name}_torch_t{threads}"] = lambda p=p: p._run(frame)
                fns[f"{name}_onnx_t{threads}"] = lambda o=o: o._run(frame)

            for name, path in window_onnx.items():

                @torch.no_grad()
                def rerun(model=Predictor.from_run(runs[name]).model):
                    model(window)  # fresh state, whole window, keep the last output

                sess = ort.InferenceSession(
                    str(path), _ort_options(threads), providers=["CPUExecutionProvider"]
                )
                feed = {sess.get_inputs()[0].name: window.numpy()}
                fns[f"{name}_torch_window{SEQ_LEN}_t{threads}"] = rerun
                fns[f"{name}_onnx_window{SEQ_LEN}_t{threads}"] = lambda s=sess, f=feed: s.run(
                    None, f
                )
            # PyTorch calls share one OpenMP pool: interleave them. Each onnxruntime session
            # owns a pool that spins after a run, so sessions are timed one after another.
            res.update(time_interleaved({k: f for k, f in fns.items() if "torch" in k}, a.iters))
            for k, f in fns.items():
                if "onnx" in k:
                    res.update(time_interleaved({k: f}, a.iters))
        torch.set_num_threads(2)
        for threads, be, sfx in itertools.product((1, 2), ("torch", "onnx"), ("", "_relu")):
            for m in models[1:]:
                res[f"ratio_{m}_over_pilotnet{sfx}_{be}_t{threads}"] = round(
                    res[f"{m}{sfx}_{be}_t{threads}"]["median_ms"]
                    / res[f"pilotnet{sfx}_{be}_t{threads}"]["median_ms"],
                    3,
                )
            step = res[f"cnn_lstm{sfx}_{be}_t{threads}"]["median_ms"]
            res[f"ratio_window_over_step{sfx}_{be}_t{threads}"] = round(
                res[f"cnn_lstm{sfx}_{be}_window{SEQ_LEN}_t{threads}"]["median_ms"] / step, 2
            )
        # predict throughput over a real video: decode + preprocess + model
        run = make_run(
            tmp / "predict", "cnn_lstm", source_size=(180, 320), spec=FrameSpec(66, 200, 70, 20)
        )
        for backend in ("torch", "onnx"):
            p = (
                Predictor.from_run(run)
                if backend == "torch"
                else OnnxPredictor(export_onnx(run, tmp / "o2"))
            )
            rates = []
            for _ in range(3):
                d = bare_video_drive(SHARED / "deeptesla" / "epoch01_front.mkv")
                t0 = time.perf_counter()
                predict_drives(p, [d])
                rates.append(len(d) / (time.perf_counter() - t0))
            res[f"predict_deeptesla_{backend}_fps_median"] = round(float(np.median(rates)), 1)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
