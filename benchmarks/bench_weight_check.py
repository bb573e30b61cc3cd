"""Cost of the NaN/inf weight check that now follows every optimiser step (issue 19).

    python benchmarks/bench_weight_check.py [--steps 8] [--reps 200]

Times the check the loop runs (`torch._foreach_norm` over the trainable weights, one
`isfinite`) against one whole optimiser step (160 frames at 66x200, Adam, clipping), as
in bench_train.py, and reports medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from steertime.models import create_model
from steertime.train.step import StepLoss


def check(params: list[torch.Tensor]) -> bool:
    norms = torch._foreach_norm([p.detach() for p in params])
    return bool(torch.isfinite(torch.stack(norms)).all())


def measure(name: str, steps: int, reps: int, seq_len: int = 10, frames: int = 160) -> dict:
    torch.manual_seed(0)
    batch = frames // seq_len
    model = create_model(name, n_outputs=2)
    params = [p for p in model.parameters() if p.requires_grad]
    step = StepLoss(model, [1.0, 1.0], 0, 0.5, 0)
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randint(0, 256, (batch, seq_len, 66, 200, 3), dtype=torch.uint8)
    y = torch.randn(batch, seq_len, 2)
    state = model.init_state(batch)
    step_s = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss, state = step(x, y, state)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 15.0)
        opt.step()
        state = {k: v.detach() for k, v in state.items()}
        if i >= 2:
            step_s.append(time.perf_counter() - t0)
    check_s = []
    for _ in range(reps):
        t0 = time.perf_counter()
        assert check(params)
        check_s.append(time.perf_counter() - t0)
    s, c = statistics.median(step_s), statistics.median(check_s)
    return {
        "model": name,
        "weights": sum(p.numel() for p in params),
        "step_ms": round(1e3 * s, 1),
        "check_ms": round(1e3 * c, 3),
        "check_share": round(c / s, 5),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in ("pilotnet", "cnn_lstm"):
        print(json.dumps(measure(name, a.steps, a.reps)))


if __name__ == "__main__":
    main()
