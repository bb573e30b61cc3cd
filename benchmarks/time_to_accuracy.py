"""Seconds of training until a run steers as well as a target on frames it never saw.

Reads runs trained with `--set train.track=<held-out cache>` (train/track.py): every
epoch's `track_rmse_steering` and `elapsed_s` in metrics.csv, the soup's in soup.json. For
each run it prints the first epoch whose held-out RMSE is at or below `--target` and when
it was on disk, and the same for the model the run kept (chosen on validation). Against
`--budget` (a peer's training seconds) both read as a share of it.

    python benchmarks/time_to_accuracy.py RUN [RUN ...] --target 0.3111 --budget 518

The first reading is DAWNBench's (time to a target test accuracy); it says when a model
as good as the target existed, not which epoch to keep — choosing by it would be choosing
on the test frames. The second is what a user who keeps the validated model gets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.evaluate.cost import training_cost

KEY = "track_rmse_steering"


def reading(run: Path, target: float) -> dict:
    """The run's first epoch at or under `target` and its kept model, with their times."""
    m = pd.read_csv(run / "metrics.csv")
    if KEY not in m:
        raise SystemExit(f"{run}: no {KEY} in metrics.csv (train with --set train.track=CACHE)")
    hit = m.index[m[KEY] <= target]
    first = m.loc[hit[0]] if len(hit) else None
    # which model the run kept and when it was on disk: the same reading as `evaluate`'s
    cost = training_cost(run)
    if cost["kept"] == "soup":
        rmse = json.loads((run / "soup.json").read_text())[KEY]
    else:
        rmse = m.loc[m["epoch"] == cost["kept_epoch"], KEY].iloc[0]
    kept = {"what": cost["kept"], "s": cost["kept_at_s"], "rmse": float(rmse)}
    return {
        "run": run.name,
        "epochs": len(m),
        "first_epoch": None if first is None else int(first["epoch"]) + 1,
        "first_s": None if first is None else float(first["elapsed_s"]),
        "first_rmse": None if first is None else float(first[KEY]),
        "kept": kept,
        "curve": [round(float(x), 4) for x in m[KEY]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--target", type=float, required=True, help="held-out steering RMSE")
    ap.add_argument("--budget", type=float, default=0.0, help="a peer's training seconds")
    a = ap.parse_args()
    rows = [reading(r, a.target) for r in a.runs]

    def share(s: float | None) -> str:
        if s is None:
            return "–"
        return f"{s:.0f} s" + (f" ({s / a.budget:.2f}x)" if a.budget else "")

    print(
        f"target: held-out steering RMSE <= {a.target}"
        + (f"; budget {a.budget:.0f} s" if a.budget else "")
    )
    print(
        "| run | first epoch at or under the target | its RMSE "
        "| kept model (validation) | its RMSE | epochs |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        first = (
            "never"
            if r["first_epoch"] is None
            else f"epoch {r['first_epoch']}, {share(r['first_s'])}"
        )
        fr = "–" if r["first_rmse"] is None else f"{r['first_rmse']:.4f}"
        k = r["kept"]
        print(
            f"| {r['run']} | {first} | {fr} "
            f"| {k['what']}, {share(k['s'])} | {k['rmse']:.4f} | {r['epochs']} |"
        )
    firsts = [r["first_s"] for r in rows]
    if all(s is not None for s in firsts):
        print(f"mean first time: {share(float(np.mean(firsts)))}")
    print(f"mean kept-model time: {share(float(np.mean([r['kept']['s'] for r in rows])))}")
    for r in rows:
        print(f"{r['run']} held-out RMSE by epoch: {r['curve']}")


if __name__ == "__main__":
    main()
