"""Per-frame latency of *your* trained runs (batch 1), before you put one in a car.

    python benchmarks/bench_stream_runs.py RUN [RUN ...] [--iters 200] [--threads 1]

For each run: one streaming step (preprocessed frame in, state carried) in PyTorch and in
onnxruntime (the run exported to a temporary folder), median and p99 in ms, at the given
thread count. A model whose checkpoint holds a frozen ImageNet encoder (`feat_lstm`) runs
that encoder every frame, which the cached-features training never shows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_stream import time_interleaved
from steertime.stream import OnnxPredictor, Predictor, export_onnx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    res: dict = {"threads": a.threads}
    with tempfile.TemporaryDirectory() as t:
        for k, run in enumerate(a.runs):
            p = Predictor.from_run(run, threads=a.threads)
            f = p.frame
            frame = np.random.default_rng(0).integers(0, 255, (f.height, f.width, 3), np.uint8)
            o = OnnxPredictor(export_onnx(run, Path(t) / f"onnx{k}"), threads=a.threads)
            name = f"{run.parent.name}/{run.name}"
            res.update(time_interleaved({f"{name} torch": lambda p=p, x=frame: p._run(x)}, a.iters))
            res.update(time_interleaved({f"{name} onnx": lambda o=o, x=frame: o._run(x)}, a.iters))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
