"""Choosing when a model asks the driver to take over, on roads that are not reported.

    p = Predictor.from_run(run)
    chosen, _, _ = choose_rule(p, heldout_seeds(1000, 20), 60.0, parse_faults("blackout:2@10"))
    drive(p, heldout_seeds(0, 20), 60.0, takeover=chosen.takeover)

A run trained with `train.spread` says how unsure it is of each steering command. A
`Takeover` rule (threshold T on that spread, held for H frames) turns it into requests.
`choose_rule` drives validation roads twice — clean and with the camera faults the car
should ask for — records every step's spread once, and picks, for each H in `HOLDS`, the
lowest T under `max_false` false requests per 10 clean minutes, then the H that warned of
the most interventions with faults (ties: the shorter hold, which asks earlier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steertime.data.faults import FaultSpec
from steertime.sim.drive import (
    FPS,
    TAKEOVER_LEAD_S,
    RoadTrace,
    Takeover,
    drive,
    takeover_counts,
)

HOLDS = (1, 3, 5)  # frames a request must stand before it is made (`drive --takeover-hold`)


def traced_drive(
    predictor, seeds: list[int], seconds: float, faults: Sequence[FaultSpec] = ()
) -> dict:
    """Drive and keep, per road, every step's steering spread and the intervention steps:
    {"summary": DriveReport.summary(), "roads": [{"std": [...], "hits": [...]}, ...]}."""
    traces: list[RoadTrace] = []
    s = drive(predictor, seeds, seconds, FPS, faults=faults, traces=traces).summary()
    roads = [{"std": t.steering_std.tolist(), "hits": t.interventions} for t in traces]
    return {"summary": s, "roads": roads}


def counts(trace: dict, threshold: float, hold: int = 1) -> dict:
    """What `Takeover(threshold, hold)` would have asked on a traced drive."""
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


def lowest_threshold(trace: dict, max_false: float, hold: int = 1) -> float:
    """The lowest spread threshold with strictly fewer than `max_false` false requests per
    10 minutes of `trace` (the highest spread seen, asking never, if none is)."""
    spreads = np.unique(np.concatenate([np.asarray(r["std"]) for r in trace["roads"]]))
    allowed = max_false * trace["summary"]["minutes"] / 10
    for t in np.quantile(spreads, np.linspace(0.5, 1.0, 201)):
        if counts(trace, float(t), hold)["false_requests"] < allowed - 1e-9:
            return float(t)
    return float(spreads.max())


@dataclass
class ChosenRule:
    takeover: Takeover
    clean: dict  # `counts` on the clean validation drives
    faulty: dict  # `counts` on the validation drives with faults

    def to_dict(self) -> dict:
        return {
            "takeover_spread": self.takeover.spread,
            "takeover_hold": self.takeover.hold,
            "validation_clean": self.clean,
            "validation_faults": self.faulty,
        }


def pick_rule(clean: dict, faulty: dict, max_false: float) -> ChosenRule:
    """From traced validation drives: per hold the lowest threshold under `max_false`
    clean, then the hold that warned of the most interventions with faults."""
    best: ChosenRule | None = None
    for hold in HOLDS:
        rule = Takeover(lowest_threshold(clean, max_false, hold), hold)
        got = counts(faulty, rule.spread, hold)
        if best is None or got["warned_share"] > best.faulty["warned_share"]:
            best = ChosenRule(rule, counts(clean, rule.spread, hold), got)
    assert best is not None
    return best


def choose_rule(
    predictor,
    seeds: list[int],
    seconds: float,
    faults: Sequence[FaultSpec],
    max_false: float = 0.5,
) -> tuple[ChosenRule, dict, dict]:
    """Drive `seeds` clean and with `faults`; the chosen rule and both traces."""
    clean = traced_drive(predictor, seeds, seconds)
    faulty = traced_drive(predictor, seeds, seconds, faults)
    return pick_rule(clean, faulty, max_false), clean, faulty


__all__ = ["HOLDS", "ChosenRule", "choose_rule", "counts", "pick_rule", "traced_drive"]
