"""Knowing when it does not know, in closed loop: takeover requests from the steering spread.

    python benchmarks/bench_takeover.py --run RUN [--faults blackout:2@10] [--roads 20]
        [--minutes 1] [--val-roads 20] [--out takeover.json] [--traces DIR]

RUN is trained with `train.spread=true` (and, to step through blackouts on memory,
`model.missing_input=true` with `data.faults`). The request rule — `steertime drive
--takeover-spread T --takeover-hold H`: ask once the steering spread has stayed above T
for H frames — is chosen on *validation* roads (`heldout_seeds(1000, …)`, never the test
roads), driven clean and with the faults: for each H in `HOLDS`, the lowest T with fewer
than `--max-false` false requests per 10 clean minutes; then the H that warned of the most
interventions with faults (`steertime takeover-rule`, `steertime.sim.takeover`). The test
roads (`heldout_seeds(0, …)`, what `steertime drive`
uses) are then driven twice, with the camera faults and clean, and every step's spread is
recorded, so the counts of any (T, H) follow without driving again:

- warned: interventions with a request in the `TAKEOVER_LEAD_S` (2 s) before them (goal:
  ≥ 80% with faults);
- false requests per 10 minutes of clean driving (goal: < 1).

`--traces DIR` also keeps the four drives' per-step spreads and departures
(`{validation,test}_{clean,faults}.json`), so another rule is replayed without driving:
`steertime.sim.takeover.counts(json.load(open(DIR / "test_faults.json")), T, H)`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steertime.atomic import write_json
from steertime.data.faults import parse_faults
from steertime.sim import heldout_seeds
from steertime.sim.takeover import choose_rule, counts, traced_drive
from steertime.stream import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--faults", default="blackout:2@10")
    ap.add_argument("--roads", type=int, default=20)
    ap.add_argument("--val-roads", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--max-false", type=float, default=0.5, help="per 10 min, on validation")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--traces", type=Path, help="folder for the drives' per-step traces")
    a = ap.parse_args()
    secs = a.minutes * 60
    p, faults = Predictor.from_run(a.run), parse_faults(a.faults)
    chosen, val, val_faulty = choose_rule(
        p, heldout_seeds(1000, a.val_roads), secs, faults, a.max_false
    )
    threshold, hold = chosen.takeover.spread, chosen.takeover.hold
    faulty = traced_drive(p, heldout_seeds(0, a.roads), secs, faults)
    clean = traced_drive(p, heldout_seeds(0, a.roads), secs)
    res = {
        "threshold": threshold,
        "hold_frames": hold,
        "validation_clean": chosen.clean,
        "validation_faults": chosen.faulty,
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
    if a.traces:
        drives = {
            "validation_clean": val,
            "validation_faults": val_faulty,
            "test_clean": clean,
            "test_faults": faulty,
        }
        for name, trace in drives.items():
            write_json(a.traces / f"{name}.json", trace)
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
