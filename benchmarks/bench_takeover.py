"""Knowing when it does not know, in closed loop: takeover requests from the steering spread.

    python benchmarks/bench_takeover.py --run RUN [--faults blackout:2@10] [--roads 10]
        [--minutes 1] [--val-roads 5] [--out takeover.json]

RUN is trained with `train.spread=true` (and, to step through blackouts on memory,
`model.missing_input=true` with `data.faults`). The threshold is chosen on *validation*
roads (`heldout_seeds(1000, …)`, never the test roads), clean: the lowest steering spread
above which the model would raise fewer than `--max-false` false requests per 10 minutes.
The test roads (`heldout_seeds(0, …)`, what `steertime drive` uses) are then driven twice,
with the camera faults and clean, and every step's spread is recorded, so the counts of
`steertime drive --takeover-spread T` follow for T without driving again:

- warned: interventions with a request in the `TAKEOVER_LEAD_S` (2 s) before them (goal:
  ≥ 80% with faults);
- false requests per 10 minutes of clean driving (goal: < 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steertime.atomic import write_json
from steertime.data.faults import parse_faults
from steertime.sim import drive, heldout_seeds
from steertime.sim.drive import FPS, TAKEOVER_LEAD_S, takeover_counts
from steertime.stream import Predictor


def traced_drive(run: Path, seeds: list[int], seconds: float, faults: str) -> dict:
    """Drive and keep, per road, every step's steering spread and the intervention steps."""
    p = Predictor.from_run(run)
    roads: list[dict] = []

    def hook(world, out, frame, n):
        if not roads or world.t < roads[-1]["t"]:  # a new road started
            roads.append({"std": [], "hits": [], "t": 0.0, "n": 0})
        r = roads[-1]
        if n > r["n"]:  # the previous step left the lane
            r["hits"].append(len(r["std"]) - 1)
        r["std"].append(out.get("steering_std", 0.0))
        r["t"], r["n"] = world.t, n

    report = drive(p, seeds, seconds, FPS, on_frame=hook, faults=parse_faults(faults))
    s = report.summary()
    for road, res in zip(roads, s["per_road"], strict=True):
        # The last step's intervention is counted after the hook ran.
        if res["interventions"] > len(road["hits"]):
            road["hits"].append(len(road["std"]) - 1)
    return {"summary": s, "roads": roads}


def held(asking: np.ndarray, frames: int) -> np.ndarray:
    """True where `asking` has held for the last `frames` steps (a debounced request)."""
    if frames <= 1:
        return asking
    run = np.zeros(len(asking), int)
    for i, a in enumerate(asking):
        run[i] = run[i - 1] + 1 if a and i else int(a)
    return run >= frames


def counts(trace: dict, threshold: float, hold: int = 1) -> dict:
    lead = int(round(TAKEOVER_LEAD_S * FPS))
    total = {"takeover_requests": 0, "warned_interventions": 0, "false_requests": 0}
    for r in trace["roads"]:
        c = takeover_counts(held(np.asarray(r["std"]) > threshold, hold), r["hits"], lead)
        for k in total:
            total[k] += c[k]
    minutes = trace["summary"]["minutes"]
    total["interventions"] = trace["summary"]["interventions"]
    total["false_per_10_min"] = total["false_requests"] / max(minutes / 10, 1e-9)
    total["warned_share"] = total["warned_interventions"] / max(total["interventions"], 1)
    return total


def choose_threshold(trace: dict, max_false: float) -> float:
    """The lowest spread threshold with fewer than `max_false` false requests / 10 min."""
    spreads = np.unique(np.concatenate([np.asarray(r["std"]) for r in trace["roads"]]))
    for t in np.quantile(spreads, np.linspace(0.5, 1.0, 201)):
        if counts(trace, float(t))["false_per_10_min"] < max_false:
            return float(t)
    return float(spreads.max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--faults", default="blackout:2@10")
    ap.add_argument("--roads", type=int, default=10)
    ap.add_argument("--val-roads", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--max-false", type=float, default=0.5, help="per 10 min, on validation")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    secs = a.minutes * 60
    val = traced_drive(a.run, heldout_seeds(1000, a.val_roads), secs, "")
    threshold = choose_threshold(val, a.max_false)
    faulty = traced_drive(a.run, heldout_seeds(0, a.roads), secs, a.faults)
    clean = traced_drive(a.run, heldout_seeds(0, a.roads), secs, "")
    res = {
        "threshold": threshold,
        "validation_clean": counts(val, threshold),
        "test_faults": {"faults": a.faults, **counts(faulty, threshold)},
        "test_clean": counts(clean, threshold),
        # The trade-off the validation threshold sits on: lower thresholds warn more.
        "sweep": [
            {
                "threshold": threshold * f,
                "warned_share_faults": counts(faulty, threshold * f)["warned_share"],
                "false_per_10_min_clean": counts(clean, threshold * f)["false_per_10_min"],
            }
            for f in (0.25, 0.5, 0.75, 1.0)
        ],
        # Debounced: a request only once the spread has stayed high for `hold` frames.
        "debounced": [
            {
                "hold_frames": h,
                "threshold": threshold * f,
                "warned_share_faults": counts(faulty, threshold * f, h)["warned_share"],
                "false_per_10_min_clean": counts(clean, threshold * f, h)["false_per_10_min"],
            }
            for h in (3, 5)
            for f in (0.5, 0.75, 1.0)
        ],
        "autonomy_pct": {
            "faults": faulty["summary"]["autonomy_pct"],
            "clean": clean["summary"]["autonomy_pct"],
        },
    }
    print(json.dumps(res, indent=2))
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
