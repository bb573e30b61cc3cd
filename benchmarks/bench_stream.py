"""Streaming latency and `predict` throughput on this CPU.

    python benchmarks/bench_stream.py [--iters 300]

Per-frame latency at batch 1 with 1 and 2 threads, median and p99, of one model step
(`pilotnet`, `cnn_lstm`) in PyTorch and onnxruntime; the same for re-running a window of
seq_len=10 frames from a fresh state for every prediction (what Donkeycar's RNN/3D models
do); and `steertime predict` over DeepTesla epoch01 (decode + preprocess + model).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from steertime.data import FrameSpec
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.stream.run import bare_video_drive, predict_drives

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SEQ_LEN = 10


def _stats(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def _time(fn, iters: int) -> list[float]:
    for _ in range(20):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=300)
    a = ap.parse_args()
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.test_stream import make_run

    res: dict = {}
    frame = np.random.default_rng(0).integers(0, 255, (66, 200, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name in ("pilotnet", "cnn_lstm"):
            run = make_run(tmp, name, source_size=(66, 200), spec=FrameSpec(66, 200))
            onnx_dir = export_onnx(run, tmp / f"onnx_{name}")
            for threads in (1, 2):
                torch.set_num_threads(threads)
                p = Predictor.from_run(run)
                o = OnnxPredictor(onnx_dir, threads=threads)
                res[f"{name}_torch_t{threads}"] = _stats(_time(lambda p=p: p._run(frame), a.iters))
                res[f"{name}_onnx_t{threads}"] = _stats(_time(lambda o=o: o._run(frame), a.iters))
                if name == "cnn_lstm":
                    window = torch.from_numpy(np.stack([frame] * SEQ_LEN))[None]

                    @torch.no_grad()
                    def rerun(window=window, model=p.model):
                        model(window)  # fresh state, whole window, keep the last output

                    res[f"{name}_torch_window{SEQ_LEN}_t{threads}"] = _stats(_time(rerun, a.iters))
        torch.set_num_threads(2)
        for threads in (1, 2):
            s = res[f"cnn_lstm_torch_t{threads}"]["median_ms"]
            res[f"ratio_cnn_lstm_over_pilotnet_torch_t{threads}"] = round(
                s / res[f"pilotnet_torch_t{threads}"]["median_ms"], 3
            )
            res[f"ratio_window_over_step_t{threads}"] = round(
                res[f"cnn_lstm_torch_window{SEQ_LEN}_t{threads}"]["median_ms"] / s, 2
            )
        # predict throughput over a real video: decode + preprocess + model
        run = make_run(tmp, "cnn_lstm", source_size=(180, 320), spec=FrameSpec(66, 200, 70, 20))
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
