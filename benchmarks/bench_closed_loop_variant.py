"""A variant of the temporal model in the closed-loop benchmark, on the same data.

    python benchmarks/bench_closed_loop_variant.py --work /tmp/closed4 --name cnn_lstm_seq5 \
        --set train.seq_len=5 [--epochs 15 --roads 30]

Reuses the cache that `bench_closed_loop.py --work DIR` prepared, trains `cnn_lstm` with
the demo's settings plus the given overrides into DIR/runs/NAME, and drives it on the
same held-out roads (seeds as `drive --seed 0`), writing DIR/closed_loop_NAME.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_closed_loop_seeds import train_and_drive  # benchmarks/ is on sys.path when run
from steertime.sim import heldout_seeds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--set", nargs="*", default=[], help="training overrides of the variant")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--roads", type=int, default=30)
    ap.add_argument("--road-seconds", type=float, default=120.0)
    a = ap.parse_args()
    report = train_and_drive(
        a.work, a.name, "cnn_lstm", a.epochs, a.set, heldout_seeds(0, a.roads), a.road_seconds
    )
    print(json.dumps({k: v for k, v in report.items() if k != "per_road"}, indent=2))


if __name__ == "__main__":
    main()
