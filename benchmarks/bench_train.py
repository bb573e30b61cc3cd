"""Training throughput (frames/s) on this CPU (or GPU).

    python benchmarks/bench_train.py [--frames-per-step 160] [--steps 15]
    python benchmarks/bench_train.py --size 120x160 --precisions fp32,bf16 --threads 1 \
        --models pilotnet,cnn_lstm --seq-lens 10
    python benchmarks/bench_train.py --size 120x160 --precisions bf16 --threads 1 \
        --models cnn_lstm --seq-lens 10 --heaps system,keep --rounds 3

Times whole optimiser steps (CNN once per frame, recurrent core over the chunk,
backward, clipping, Adam) of each model at each seq_len with the same number of frames
per step, and reports medians and the ratios the goals name; with several precisions
(`train.precision`), each one's speed-up over fp32, the precisions interleaved round by
round so that a machine's drift hits them alike. With several `--heaps` (`train.heap`,
a setting of the whole process), each heap runs in its own process, the heaps alternating
for `--rounds` rounds; the median of each heap's rounds and their ratio are reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from steertime.heap import keep_freed_memory
from steertime.models import create_model
from steertime.train.step import StepLoss


class Bench:
    """One model's optimiser step at one seq_len and precision, timed step by step."""

    def __init__(self, name: str, seq_len: int, frames_per_step: int, size, precision: str):
        torch.manual_seed(0)
        self.batch = batch = max(1, frames_per_step // seq_len)
        h, w = size
        self.model = create_model(name, n_outputs=2, height=h, width=w)
        self.step_loss = StepLoss(self.model, [1.0, 1.0], 0, 0.5, 0, precision=precision)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = torch.randint(0, 256, (batch, seq_len, h, w, 3), dtype=torch.uint8)
        self.y = torch.randn(batch, seq_len, 2)
        self.state = self.model.init_state(batch)
        self.frames = batch * seq_len
        self.times: list[float] = []

    def run(self, timed: bool = True) -> None:
        t0 = time.perf_counter()
        loss, state = self.step_loss(self.x, self.y, self.state)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 15.0)
        self.opt.step()
        self.state = {k: v.detach() for k, v in state.items()}
        if timed:
            self.times.append(time.perf_counter() - t0)

    def frames_per_s(self) -> float:
        return self.frames / statistics.median(self.times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-per-step", type=int, default=160)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--size", default="66x200", help="HxW of the frames")
    ap.add_argument("--models", default="pilotnet,cnn_lstm,cnn_lstm_ar,komanda")
    ap.add_argument("--seq-lens", default="10,50")
    ap.add_argument("--precisions", default="fp32", help="e.g. fp32,bf16 (train.precision)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    ap.add_argument("--heaps", default="system", help="train.heap values, e.g. system,keep")
    ap.add_argument("--rounds", type=int, default=3, help="processes per heap (several heaps)")
    a = ap.parse_args()
    heaps = a.heaps.split(",")
    if len(heaps) > 1:
        print(json.dumps(compare_heaps(heaps, a.rounds), indent=2))
        return
    if heaps[0] == "keep" and not keep_freed_memory():
        raise SystemExit("--heaps keep: this C library has no mallopt (not glibc)")
    if a.threads:
        torch.set_num_threads(a.threads)
    size = tuple(int(v) for v in a.size.split("x"))
    precisions = a.precisions.split(",")
    r: dict = {}
    for m in a.models.split(","):
        for t in (int(v) for v in a.seq_lens.split(",")):
            benches = {p: Bench(m, t, a.frames_per_step, size, p) for p in precisions}
            for b in benches.values():  # warm-up steps excluded
                for _ in range(3):
                    b.run(timed=False)
            for _ in range(a.steps):  # interleaved: drift hits every precision alike
                for b in benches.values():
                    b.run()
            for p, b in benches.items():
                key = f"{m}_seq{t}" + ("" if p == "fp32" else f"_{p}")
                r[key] = round(b.frames_per_s(), 1)
                if p != "fp32" and "fp32" in benches:
                    r[f"{key}_over_fp32"] = round(r[key] / r[f"{m}_seq{t}"], 3)
    r["threads"] = torch.get_num_threads()
    # What the heap setting costs: the process's peak resident memory (Linux: KiB).
    r["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    r["size"] = a.size
    if "cnn_lstm_seq10" in r and "pilotnet_seq10" in r:
        r["cnn_lstm_over_pilotnet_seq10"] = round(r["cnn_lstm_seq10"] / r["pilotnet_seq10"], 3)
    if "cnn_lstm_seq10" in r and "cnn_lstm_seq50" in r:
        # per-frame cost ratio seq 50 / seq 10 = inverse throughput ratio
        r["cnn_lstm_cost_seq50_over_seq10"] = round(r["cnn_lstm_seq10"] / r["cnn_lstm_seq50"], 3)
    print(json.dumps(r, indent=2))


def compare_heaps(heaps: list[str], rounds: int) -> dict:
    """Each heap in a fresh process (mallopt cannot be undone), alternating round by round."""
    # This run's flags less --heaps (either form), which each child gets one value of.
    argv = sys.argv[1:]
    args = [
        v
        for i, v in enumerate(argv)
        if not v.startswith("--heaps") and (i == 0 or argv[i - 1] != "--heaps")
    ]
    runs: dict[str, list[dict]] = {h: [] for h in heaps}
    for _ in range(rounds):
        for h in heaps:
            out = subprocess.run(
                [sys.executable, __file__, *args, "--heaps", h],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[h].append(json.loads(out))
    keys = [k for k, v in runs[heaps[0]][0].items() if isinstance(v, float) and "_over_" not in k]
    r: dict = {"rounds": rounds}
    for k in keys:
        for h in heaps:
            r[f"{k}_{h}"] = statistics.median(run[k] for run in runs[h])
            r[f"{k}_{h}_all"] = [run[k] for run in runs[h]]
        for h in heaps[1:]:
            r[f"{k}_{h}_over_{heaps[0]}"] = round(r[f"{k}_{h}"] / r[f"{k}_{heaps[0]}"], 3)
    return r


if __name__ == "__main__":
    main()
