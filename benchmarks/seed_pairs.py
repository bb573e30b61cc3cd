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

import numpy as np
import pandas as pd

from steertime.evaluate.metrics import block_bootstrap_ratio

BLOCK = 40  # 2 s at 20 Hz, as bench_sessions.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folds", type=Path, help="W/tubval: one folder per fold")
    ap.add_argument("--model", default="cnn_lstm")
    a = ap.parse_args()
    parts = []
    for f in sorted(glob.glob(str(a.folds / "*" / "predictions_all.parquet"))):
        d = pd.read_parquet(f)
        d["fold"] = Path(f).parent.name
        parts.append(d)
    d = pd.concat(parts, ignore_index=True)
    runs = [a.model] + [f"{a.model}_s{s}" for s in (1, 2, 3)]
    y = d["true_steering"].to_numpy()
    err = {r: np.clip(d[f"{r}:steering"].to_numpy(), -1, 1) - y for r in runs}
    folds = d["fold"].to_numpy()

    def pair(p: tuple[int, int]) -> np.ndarray:  # per-frame error whose RMSE is the pair's
        return np.sqrt((err[runs[p[0]]] ** 2 + err[runs[p[1]]] ** 2) / 2)

    for p, q in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        ea, eb = pair(q), pair(p)
        ratio = np.sqrt(np.mean(ea**2) / np.mean(eb**2))
        lo, hi = block_bootstrap_ratio(ea, eb, BLOCK, groups=folds)
        per = [
            np.sqrt(np.mean(ea[folds == f] ** 2) / np.mean(eb[folds == f] ** 2))
            for f in dict.fromkeys(folds)
        ]
        print(
            f"seeds {q} vs {p}: {ratio:.3f}x [{lo:.3f}, {hi:.3f}]; per fold "
            + " / ".join(f"{r:.3f}" for r in per)
        )


if __name__ == "__main__":
    main()
