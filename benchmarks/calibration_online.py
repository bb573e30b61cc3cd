"""Static against online-recalibrated 90% intervals, over a range of steps (gamma).

    python benchmarks/calibration_online.py CACHE RUN [RUN ...] [--split all] [--gammas 0.01,0.05]

Each RUN (trained with `train.spread=true`) streams once over CACHE's `--split` as
`steertime evaluate` does; then, per output, the 90% interval as trained (calibrated on
validation) and recalibrated online (`steertime.stream.adaptive`, each gamma) is scored:
coverage, mean width against the static one, and the worst coverage over any 20 s window
(an interval that is honest only on average hides bad stretches). Choose gamma on
held-out minutes that are not the test ones; `steertime evaluate --adapt-gamma` is the
figure a user gets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from steertime.data import Cache
from steertime.evaluate.run import adaptive_spread, predict_on_cache
from steertime.models.layout import Z90

WINDOW_S = 20.0


def worst_window(covered: np.ndarray, drive: np.ndarray, rate_hz: float) -> float:
    """Lowest share covered over consecutive windows of WINDOW_S within each drive."""
    n = max(1, int(WINDOW_S * rate_hz))
    worst = 1.0
    for d in dict.fromkeys(drive):
        c = covered[drive == d]
        for a in range(0, max(1, len(c) - n + 1), n // 2 or 1):
            worst = min(worst, float(np.mean(c[a : a + n])))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--split", default="all", help="cache split, or 'all'")
    ap.add_argument("--gammas", default="0.01,0.02,0.05,0.1,0.2")
    a = ap.parse_args()
    cache = Cache.open(a.cache)
    gammas = [float(g) for g in a.gammas.split(",")]
    for run in a.runs:
        frames, layout = predict_on_cache(run, cache, None if a.split == "all" else a.split)
        (m,) = frames.preds
        print(f"{run}: {len(frames.t)} frames, lead {frames.leads.get(m, 0)}")
        for name in layout.names:
            pred, sd = frames.preds[m][name], frames.spreads[m][name]
            target = frames.calibration_target(m, name)
            rows = [("as trained", sd)] + [
                (f"online gamma {g:g}", adaptive_spread(frames, m, name, g)) for g in gammas
            ]
            for label, s in rows:
                covered = np.abs(pred - target) <= Z90 * s
                worst = worst_window(covered, frames.drive, frames.rate_hz)
                print(
                    f"  {name:14s} {label:20s} covers {covered.mean():6.1%}  width "
                    f"x{np.mean(s) / np.mean(sd):.2f}  worst {WINDOW_S:g} s window {worst:6.1%}"
                )


if __name__ == "__main__":
    main()
