"""Streaming latency under load: one frame at batch 1 while CPU-bound neighbours run.

    nice -n 0 python benchmarks/bench_load.py [--neighbours 1] [--iters 150]

A car's computer is never idle. This starts `--neighbours` busy-looping processes (the
"neighbour": a planner, a logger, a second model), then times one streaming step of
`pilotnet` and `cnn_lstm` (66x200 frames, untrained weights: latency does not depend on
them) in PyTorch and onnxruntime with 1 and 2 intra-op threads, round-robin so drift hits
all alike; and `predict_drives` (decode + preprocess + model) over 300 frames of
udacity_sim_track1 with 1 and 2 threads. Prints JSON and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_stream import SHARED, make_run, time_interleaved  # noqa: E402  (run as a script)
from steertime.data import FrameSpec, read_drives
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.stream.run import predict_drives


def _busy() -> None:
    x = 0
    while True:  # pure CPU, like any compute-bound neighbour
        x = (x * 31 + 7) % 1000003


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--neighbours", type=int, default=1)
    ap.add_argument("--iters", type=int, default=150)
    a = ap.parse_args()
    procs = [mp.Process(target=_busy, daemon=True) for _ in range(a.neighbours)]
    for p in procs:
        p.start()
    res: dict = {"neighbours": a.neighbours, "cpus": os.cpu_count()}
    try:
        time.sleep(2)  # let the neighbours settle onto the cores
        frame = np.random.default_rng(0).integers(0, 255, (66, 200, 3), dtype=np.uint8)
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            fns = {}
            runs = {
                n: make_run(tmp, n, (66, 200), FrameSpec(66, 200)) for n in ("pilotnet", "cnn_lstm")
            }
            for name, run in runs.items():
                folder = export_onnx(run, tmp / f"onnx_{name}")
                for threads in (1, 2):
                    tp = Predictor.from_run(run, threads=threads)
                    op = OnnxPredictor(folder, threads=threads)
                    fns[f"{name}_torch_t{threads}"] = lambda p=tp: p._run(frame)
                    fns[f"{name}_onnx_t{threads}"] = lambda p=op: p._run(frame)
            res["step"] = time_interleaved(fns, a.iters)
            (d,) = read_drives(SHARED / "udacity_sim_track1")
            clip = d.slice(np.arange(1000, 1300), d.name)
            video_run = make_run(tmp / "video", "cnn_lstm", (160, 320), FrameSpec(66, 200, 60, 20))
            for threads in (1, 2):
                p = Predictor.from_run(video_run, threads=threads)
                t0 = time.perf_counter()
                predict_drives(p, [clip])
                res[f"predict_udacity_sim_cnn_lstm_t{threads}_fps"] = round(
                    len(clip) / (time.perf_counter() - t0), 1
                )
        res["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        for p in procs:
            p.terminate()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
