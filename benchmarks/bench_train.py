"""Training throughput (frames/s) at 66x200 on this CPU.

    python benchmarks/bench_train.py [--frames-per-step 160] [--steps 15]

Times whole optimiser steps (CNN once per frame, recurrent core over the chunk,
backward, clipping, Adam) of `pilotnet` and `cnn_lstm`, at seq_len 10 and 50 with the
same number of frames per step, and reports medians and the ratios the goals name.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from steertime.models import create_model
from steertime.train.loop import StepLoss


def frames_per_s(name: str, seq_len: int, frames_per_step: int, steps: int) -> float:
    torch.manual_seed(0)
    batch = max(1, frames_per_step // seq_len)
    model = create_model(name, n_outputs=2)
    step = StepLoss(model, [1.0, 1.0], 0, 0.5, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (batch, seq_len, 66, 200, 3), dtype=torch.uint8)
    y = torch.randn(batch, seq_len, 2)
    state = model.init_state(batch)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss, state = step(x, y, state)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 15.0)
        opt.step()
        state = {k: v.detach() for k, v in state.items()}
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return batch * seq_len / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-per-step", type=int, default=160)
    ap.add_argument("--steps", type=int, default=15)
    a = ap.parse_args()
    r = {
        f"{m}_seq{t}": round(frames_per_s(m, t, a.frames_per_step, a.steps), 1)
        for m in ("pilotnet", "cnn_lstm", "cnn_lstm_ar", "komanda")
        for t in (10, 50)
    }
    r["threads"] = torch.get_num_threads()
    r["cnn_lstm_over_pilotnet_seq10"] = round(r["cnn_lstm_seq10"] / r["pilotnet_seq10"], 3)
    # per-frame cost ratio seq 50 / seq 10 = inverse throughput ratio
    r["cnn_lstm_cost_seq50_over_seq10"] = round(r["cnn_lstm_seq10"] / r["cnn_lstm_seq50"], 3)
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
