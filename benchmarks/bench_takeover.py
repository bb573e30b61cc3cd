"""Knowing when it does not know, in closed loop: takeover requests from the steering spread.

    python benchmarks/bench_takeover.py --run RUN [--faults blackout:2@10] [--roads 20]
        [--minutes 1] [--val-roads 20] [--out takeover.json]

RUN is trained with `train.spread=true` (and, to step through blackouts on memory,
`model.missing_input=true` with `data.faults`). The request rule — `steertime drive
--takeover-spread T --takeover-hold H`: ask once the steering spread has stayed above T
for H frames — is chosen on *validation* roads (`heldout_seeds(1000, …)`, never the test
roads), driven clean and with the faults: for each H in `HOLDS`, the lowest T with fewer
than `--max-false` false requests per 10 clean minutes; then the H that warned of the most
interventions with faults. The test roads (`heldout_seeds(0, …)`, what `steertime drive`
uses) are then driven twice, with the camera faults and clean, and every step's spread is
recorded, so the counts of any (T, H) follow without driving again:

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
from steertime.sim.drive import FPS, TAKEOVER_LEAD_S, Takeover, takeover_counts
from steertime.stream import Predictor

HOLDS = (1, 3, 5)  # frames a request must stand before it is made (`drive --takeover-hold`)


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


def counts(trace: dict, threshold: float, hold: int = 1) -> dict:
    lead = int(round(TAKEOVER_LEAD_S * FPS))
    rule = Takeover(threshold, hold)
    total = {"takeover_requests": 0, "warned_interventions": 0, "false_requests": 0}
    for r in trace["roads"]:
        c = takeover_counts(rule.asking(np.asarray(r["std"])), r["hits"], lead)
        for k in total:
            total[k] += c[k]
    minutes = trace["summary"]["minutes"]
    total["interventions"] = trace["summary"]["interventions"]
    total["false_per_10_min"] = total["false_requests"] / max(minutes / 10, 1e-9)
    total["warned_share"] = total["warned_interventions"] / max(total["interventions"], 1)
    return total


def choose_threshold(trace: dict, max_false: float, hold: int = 1) -> float:
    """The lowest spread threshold with fewer than `max_false` false requests / 10 min."""
    spreads = np.unique(np.concatenate([np.asarray(r["std"]) for r in trace["roads"]]))
    allowed = max_false * trace["summary"]["minutes"] / 10  # false requests, strictly fewer
    for t in np.quantile(spreads, np.linspace(0.5, 1.0, 201)):
        if counts(trace, float(t), hold)["false_requests"] < allowed - 1e-9:
            return float(t)
    return float(spreads.max())


def choose_rule(clean: dict, faulty: dict, max_false: float) -> dict:
    """On validation roads: per hold, the lowest threshold under `max_false` clean; then the
    hold that warned of the most interventions with faults (ties: the shorter hold)."""
    best = None
    for hold in HOLDS:
        t = choose_threshold(clean, max_false, hold)
        warned = counts(faulty, t, hold)["warned_share"]
        if best is None or warned > best["warned_share_faults"]:
            best = {"threshold": t, "hold_frames": hold, "warned_share_faults": warned}
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--faults", default="blackout:2@10")
    ap.add_argument("--roads", type=int, default=20)
    ap.add_argument("--val-roads", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--max-false", type=float, default=0.5, help="per 10 min, on validation")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    secs = a.minutes * 60
    val = traced_drive(a.run, heldout_seeds(1000, a.val_roads), secs, "")
    val_faulty = traced_drive(a.run, heldout_seeds(1000, a.val_roads), secs, a.faults)
    rule = choose_rule(val, val_faulty, a.max_false)
    threshold, hold = rule["threshold"], rule["hold_frames"]
    faulty = traced_drive(a.run, heldout_seeds(0, a.roads), secs, a.faults)
    clean = traced_drive(a.run, heldout_seeds(0, a.roads), secs, "")
    res = {
        "threshold": threshold,
        "hold_frames": hold,
        "validation_clean": counts(val, threshold, hold),
        "validation_faults": counts(val_faulty, threshold, hold),
        "test_faults": {"faults": a.faults, **counts(faulty, threshold, hold)},
        "test_clean": counts(clean, threshold, hold),
        # The trade-off the chosen threshold sits on, without a hold: lower ones warn more.
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
            "validation_faults": val_faulty["summary"]["autonomy_pct"],
            "faults": faulty["summary"]["autonomy_pct"],
            "clean": clean["summary"]["autonomy_pct"],
        },
    }
    print(json.dumps(res, indent=2))
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
