"""Closed-loop autonomy on held-out simulated roads (the simulator issue's goal).

    python benchmarks/bench_closed_loop.py --work /tmp/closed [--minutes 20 --epochs 25]

Runs the demo pipeline at benchmark scale: simulate, prepare, train `pilotnet` and
`cnn_lstm` on the same data, then drive both on 10 unseen roads of 2 minutes each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from steertime.demo import run_demo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--roads", type=int, default=10)
    ap.add_argument("--road-seconds", type=float, default=120.0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    run_demo(a.work, a.minutes, a.epochs, a.roads, a.road_seconds, log=print)
    closed = json.loads((a.work / "closed_loop.json").read_text())
    out = {m: {k: v for k, v in r.items() if k != "per_road"} for m, r in closed.items()}
    out["wall_minutes"] = (time.perf_counter() - t0) / 60
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
