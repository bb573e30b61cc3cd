"""How far two seed pairs of ONE recipe land apart on the tub's folds: the noise floor of
ranking a lever by "×2 against ×2" (bench_sessions.py --protocols tubval).

    python benchmarks/seed_pairs.py W/tubval [--model cnn_lstm]

Reads every fold's predictions_all.parquet (the runs `--models "cnn_lstm*4"` trained) and
prints each split of the four seeds into two pairs — {0,1} against {2,3} and the other two
— as bench_sessions' tables print a lever: pooled steering RMSE ratio with its paired
block-bootstrap 95% interval (2 s blocks, never across folds), and per fold.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import pandas as pd

from bench_sessions import paired_row  # a pair is scored exactly as a lever's `m ×2` row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folds", type=Path, help="W/tubval: one folder per fold")
    ap.add_argument("--model", default="cnn_lstm")
    a = ap.parse_args()
    parts = []
    for f in sorted(glob.glob(str(a.folds / "*" / "predictions_all.parquet"))):
        parts.append(pd.read_parquet(f).assign(fold=Path(f).parent.name))
    preds = pd.concat(parts, ignore_index=True)
    runs = [a.model] + [f"{a.model}_s{s}" for s in (1, 2, 3)]
    for p, q in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        groups = {"a": [runs[i] for i in q], "b": [runs[i] for i in p]}
        r = paired_row(preds, "a", "b", groups)
        lo, hi = r["vs_b_ci95"]
        ref = paired_row(preds, "b", "b", groups)["per_fold"]
        per = " / ".join(f"{v / ref[f]:.3f}" for f, v in r["per_fold"].items())
        print(f"seeds {q} vs {p}: {r['vs_b']:.3f}x [{lo:.3f}, {hi:.3f}]; per fold {per}")


if __name__ == "__main__":
    main()
