"""A model trained at the log's frame rate, driven at a lower one.

    python benchmarks/rate_shift.py --work W --runs cnn_lstm,cnn_lstm_s1[,...] [--fps 10]

W is a `bench_sessions.py --protocols tubval` work folder. A car whose computer falls
behind its camera sees fewer frames a second than the model was trained on: a memory
that learnt the motion between 20 Hz frames then reads twice the motion per step. For
each nested fold the held-out records are prepared again at --fps (`steertime prepare
--fps`, the same view of the tub) and every run is scored there with `steertime
evaluate`; the table sets that beside the same run's predictions at the native rate on
the very same frames (the rows the lower rate keeps), pooled over the folds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench_sessions import TUBVAL  # the nested folds, named as that script names them

FOLDS = {f"{k}_{a}-{b - 1}": k for k, (_, (a, b)) in TUBVAL.items()}  # folder -> view letter
CLI = [sys.executable, "-m", "steertime"]


def _rmse_sq(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(((np.clip(pred, -1, 1) - truth) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--fps", type=float, default=10.0)
    a = ap.parse_args()
    runs = a.runs.split(",")
    sums = {r: [0.0, 0.0] for r in runs}  # native, lowered
    n = 0
    for fold, letter in FOLDS.items():
        folder = a.work / "tubval" / fold
        low = a.work / f"rate_{a.fps:g}" / fold
        cache = low / "cache"
        if not cache.exists():
            src = a.work / f"tubval_{letter}_test"
            size = "x".join(str(v) for v in _frame_size(folder / "cache_test"))
            subprocess.run(
                [*CLI, "prepare", str(src), "--out", str(cache), "--size", size,
                 "--fps", f"{a.fps:g}", "--split", "tail", "--val", "0", "--test", "0"],
                check=True, capture_output=True,
            )  # fmt: skip
        native = pd.read_parquet(folder / "predictions_all.parquet")
        for r in runs:
            out = low / r
            if not (out / "predictions.parquet").exists():
                subprocess.run(
                    [*CLI, "evaluate", str(folder / r), "--data", str(cache),
                     "--split", "all", "--out", str(out)],
                    check=True, capture_output=True,
                )  # fmt: skip
            got = pd.read_parquet(out / "predictions.parquet")
            # the lowered view keeps some of the native rows: match them on their times
            both = got.merge(native[["t", f"{r}:steering"]], on="t", suffixes=("", "_native"))
            if len(both) != len(got):
                missing = len(got) - len(both)
                raise SystemExit(f"{fold}: {missing} lowered frames not found natively")
            truth = both["true_steering"].to_numpy()
            sums[r][0] += _rmse_sq(both[f"{r}:steering_native"].to_numpy(), truth)
            sums[r][1] += _rmse_sq(both[f"{r}:steering"].to_numpy(), truth)
        n += len(both)
    print(f"| run | native rate | at {a.fps:g} fps | ratio |")
    print("| --- | --- | --- | --- |")
    for r, (nat, lowered) in sums.items():
        print(f"| `{r}` | {np.sqrt(nat / n):.4f} | {np.sqrt(lowered / n):.4f} | "
              f"{np.sqrt(lowered / nat):.3f}x |")  # fmt: skip
    print(f"({n} frames, {len(FOLDS)} folds)")


def _frame_size(cache: Path) -> tuple[int, int]:
    import json

    frame = json.loads((cache / "manifest.json").read_text())["frame"]
    return frame["height"], frame["width"]


if __name__ == "__main__":
    main()
