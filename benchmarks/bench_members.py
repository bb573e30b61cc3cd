"""Wall time of `train --seeds K` with its members one after another and side by side.

    python benchmarks/bench_members.py --data CACHE --test TEST_CACHE --work W \
        --args "--model cnn_lstm --outputs steering,throttle --epochs 30 \
                --set train.patience=8 --set train.precision=bf16" [--seeds 2]

Runs, one at a time and through the CLI a user runs (`steertime train ARGS`):
  one    a single run (seed 0, torch's default threads: every core)
  turns  `--seeds K`: the members one after another, each on every core
  side   `--seeds K --jobs K`: the members side by side, each on its share of the cores
then scores the three on TEST with one `steertime evaluate` and prints wall seconds and
held-out steering RMSE, with the ratios the `--jobs` flag is for (side / turns, side / one).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    print("$ steertime " + shlex.join(cmd), flush=True)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "steertime", *cmd], check=True)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="prepared training cache")
    ap.add_argument("--test", required=True, help="prepared cache scored with --split all")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--args", default="--model cnn_lstm", help="the rest of `steertime train`")
    ap.add_argument("--seeds", type=int, default=2)
    a = ap.parse_args()
    base = ["train", "--data", a.data, *shlex.split(a.args)]
    k = str(a.seeds)
    runs = {
        "one": [],
        "turns": ["--seeds", k],
        "side": ["--seeds", k, "--jobs", k],
    }
    wall = {}
    for name, extra in runs.items():
        if (a.work / name / "checkpoints" / "best").is_dir():
            sys.exit(f"{a.work / name} holds a run already: give another --work")
        wall[name] = timed([*base, *extra, "--out", str(a.work / name)])
    ev = a.work / "eval"
    compare = [arg for name in ("one", "turns") for arg in ("--compare", str(a.work / name))]
    timed(["evaluate", str(a.work / "side"), "--data", a.test, "--split", "all", *compare,
           "--out", str(ev)])  # fmt: skip
    scores = json.loads((ev / "metrics.json").read_text())["outputs"]["steering"]["models"]
    print("\n| run | wall s | held-out steering RMSE (95% CI) |\n| --- | --- | --- |")
    for name in runs:
        s = scores[name]
        lo, hi = s["rmse_ci95"]
        print(f"| {name} | {wall[name]:.0f} | {s['rmse']:.4f} [{lo:.3f}, {hi:.3f}] |")
    print(
        f"\nside / turns wall: {wall['side'] / wall['turns']:.2f}x; "
        f"side / one: {wall['side'] / wall['one']:.2f}x"
    )


if __name__ == "__main__":
    main()
