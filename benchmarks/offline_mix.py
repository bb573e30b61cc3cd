"""Averages of trained runs scored offline from `bench_sessions.py`'s saved predictions.

    python benchmarks/offline_mix.py --work W --protocol tubval \
        --ref "plain4=cnn_lstm,cnn_lstm_s1,cnn_lstm_s2,cnn_lstm_s3" \
        --mix "rec=cnn_lstm,cnn_lstm_s1,cnn_lstm_rec1,cnn_lstm_rec1_s1" [--mix ...] \
        [--everything] [--greedy 4]

Each fold's `predictions_all.parquet` holds every run `bench_sessions.py` scored there,
frame by frame. A mix is the mean of its members' steering, each clipped to ±1 — what
`steertime ensemble` of those runs predicts — so many averages can be compared without
training or streaming again. Ratios are against `--ref`, paired on the same frames (2 s
blocks, never across folds), as in `bench_sessions.py`.

`--everything` adds the average of every run named `cnn_lstm*` (a recipe's seeds and all
its variants). `--greedy N` chooses recipes honestly: for each fold, starting from the
first two `--ref` members, it adds up to N recipes (a recipe: a run and its `_sK` seeds)
one at a time by their pooled RMSE on the *other* folds, stopping when none helps, and
scores the choice on the held-out fold — selection never sees the frames it is scored on.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import bench_sessions as B  # noqa: E402


def load(work: Path, protocol: str) -> pd.DataFrame:
    parts = []
    for f in sorted((work / protocol).glob("*/predictions_all.parquet")):
        p = pd.read_parquet(f)
        p["fold"] = f.parent.name
        parts.append(p)
    if not parts:
        raise SystemExit(f"no {work / protocol}/*/predictions_all.parquet")
    return pd.concat(parts, ignore_index=True)


def member(preds: pd.DataFrame, run: str) -> np.ndarray:
    col = f"{run}:steering"
    if col not in preds:
        raise SystemExit(f"no predictions of run {run!r} (scored in every fold?)")
    return np.clip(preds[col].to_numpy(), -1, 1)


def add_mix(preds: pd.DataFrame, name: str, runs: list[str]) -> None:
    preds[f"{name}:steering"] = np.mean([member(preds, r) for r in runs], axis=0)


def recipes(preds: pd.DataFrame, prefix: str = "cnn_lstm") -> dict[str, list[str]]:
    """Runs grouped by recipe: `cnn_lstm_rec1` and `cnn_lstm_rec1_s1` are one."""
    out: dict[str, list[str]] = {}
    for c in preds.columns:
        run = c.removesuffix(":steering")
        if c.endswith(":steering") and run.startswith(prefix):
            out.setdefault(re.sub(r"_s\d+$", "", run), []).append(run)
    return out


def greedy(preds: pd.DataFrame, start: list[str], pool: dict[str, list[str]], most: int):
    """Per fold, recipes chosen on the other folds; returns (predictions, choices)."""
    y = preds["true_steering"].to_numpy()
    fold = preds["fold"].to_numpy()
    out, chosen = np.full(len(y), np.nan), {}

    def rmse(runs: list[str], mask: np.ndarray) -> float:
        p = np.mean([member(preds, r) for r in runs], axis=0)
        return float(np.sqrt(np.mean((p - y)[mask] ** 2)))

    for f in np.unique(fold):
        fit, runs, picks = fold != f, list(start), []
        for _ in range(most):
            now = rmse(runs, fit)
            score, best = min((rmse(runs + pool[k], fit), k) for k in pool)
            if score >= now:
                break
            runs, picks = runs + pool[best], picks + [best]
        out[fold == f] = np.mean([member(preds, r) for r in runs], axis=0)[fold == f]
        chosen[str(f)] = picks
    return out, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--protocol", default="tubval")
    ap.add_argument("--ref", required=True, help="NAME=RUN,RUN,...: what ratios are against")
    ap.add_argument("--mix", action="append", default=[], help="NAME=RUN,RUN,...")
    ap.add_argument("--everything", action="store_true")
    ap.add_argument("--greedy", type=int, default=0)
    a = ap.parse_args()
    preds = load(a.work, a.protocol)
    ref, ref_runs = a.ref.split("=", 1)[0], a.ref.split("=", 1)[1].split(",")
    mixes = {m.split("=", 1)[0]: m.split("=", 1)[1].split(",") for m in [a.ref, *a.mix]}
    pool = recipes(preds)
    if a.everything:
        mixes["everything"] = [r for runs in pool.values() for r in runs]
    for name, runs in mixes.items():
        add_mix(preds, name, runs)
    if a.greedy:
        pool = {k: v for k, v in pool.items() if not set(v) & set(ref_runs)}
        preds["greedy:steering"], chosen = greedy(preds, ref_runs[:2], pool, a.greedy)
        print("greedy choices per scored fold:", chosen)
        mixes["greedy"] = []
    folds = sorted(preds["fold"].unique())
    print(f"| mix | runs | steering RMSE | vs {ref} (95% CI) | {' | '.join(folds)} |")
    print("| --- | --- | --- | --- |" + " --- |" * len(folds))
    for name, runs in mixes.items():
        r = B.paired_row(preds, name, ref, {})
        lo, hi = r[f"vs_{ref}_ci95"]
        per = " | ".join(f"{r['per_fold'][f]:.4f}" for f in folds)
        n = len(runs) or "chosen"
        ratio = f"{r[f'vs_{ref}']:.3f}x [{lo:.3f}, {hi:.3f}]"
        print(f"| {name} | {n} | {r['steering']:.4f} | {ratio} | {per} |")


if __name__ == "__main__":
    main()
