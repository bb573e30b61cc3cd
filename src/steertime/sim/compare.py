"""Paired comparison of two models driven closed-loop on the same roads.

Two good models are often at the ceiling of autonomy (one intervention is 0.5 points on
10 roads x 2 minutes), so the comparison also looks at how close each came to an
intervention: its mean and worst |lateral offset| on every road. Every difference is
a minus b, with a 95% interval from resampling roads (jointly for both models, since
hard roads are hard for both), and with the number of drives on which each was better.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steertime.errors import SteertimeError
from steertime.sim.drive import RoadResult, autonomy_fraction

# Per-road measures where lower is better, compared road by road.
LOWER_IS_BETTER = ("interventions", "mean_abs_offset", "max_abs_offset", "mean_abs_wheel_rate")


def load_roads(path: Path) -> list[RoadResult]:
    """The per-road results of a report written by `steertime drive --out`."""
    try:
        rows = json.loads(Path(path).read_text())["per_road"]
    except FileNotFoundError:
        raise SteertimeError(f"{path}: no such drive report") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SteertimeError(f"{path}: not a JSON drive report ({e})") from None
    except (KeyError, TypeError):
        raise SteertimeError(f"{path}: no 'per_road' list — write it with `drive --out`") from None
    names = {f.name for f in dataclasses.fields(RoadResult)}
    roads = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != names:
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise SteertimeError(f"{path}: per_road[{i}] has {got}, expected {sorted(names)}")
        roads.append(RoadResult(**row))
    return roads


def _check_paired(a: Sequence[RoadResult], b: Sequence[RoadResult]) -> None:
    if not a:
        raise SteertimeError("no roads to compare")
    if len(a) != len(b):
        raise SteertimeError(f"a has {len(a)} roads and b {len(b)}: drive both on the same roads")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.seed != y.seed:
            raise SteertimeError(
                f"road {i}: a drove seed {x.seed}, b seed {y.seed} — drive both with the "
                "same --seed and --roads"
            )


class _RoadBootstrap:
    """Resamples road seeds, each with all its drives: several training seeds drive the
    same road, and their results on it are not independent (a hard road is hard for all)."""

    def __init__(self, roads: Sequence[RoadResult], n_boot: int, seed: int) -> None:
        _, self.group = np.unique([r.seed for r in roads], return_inverse=True)
        n_groups = int(self.group.max()) + 1
        self.picks = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))

    def sums(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(total of x, its total in every resample)."""
        g = np.bincount(self.group, weights=np.asarray(x, float))
        return float(g.sum()), g[self.picks].sum(1)


# Fewer roads than this give no interval: a bootstrap over 1–4 roads has at most 126
# distinct resamples and its percentile interval is far too narrow (one road: width 0).
MIN_ROADS = 5


def _interval(point: float, boot: np.ndarray) -> tuple[float, float, float]:
    return float(point), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def compare_drives(
    a: Sequence[RoadResult], b: Sequence[RoadResult], n_boot: int = 2000, seed: int = 0
) -> dict:
    """a vs b on the same roads (in the same order; several training seeds' runs may be
    concatenated, each seed's a paired with its b).

    -> {"roads": n, "autonomy_pct": {a, b, diff, ci95}, MEASURE: {a, b, diff, ci95,
    a_better_roads, b_better_roads}} for each of LOWER_IS_BETTER, where MEASURE is the
    mean over drives; a negative diff of those favours a. Every ci95 is None under
    `MIN_ROADS` distinct roads."""
    _check_paired(a, b)
    boot = _RoadBootstrap(a, n_boot, seed)
    n, n_b = boot.sums(np.ones(len(a)))

    def column(roads: Sequence[RoadResult], name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in roads], float)

    (ka, ka_b), (kb, kb_b) = (boot.sums(column(x, "interventions")) for x in (a, b))
    (ta, ta_b), (tb, tb_b) = (boot.sums(column(x, "seconds")) for x in (a, b))
    diff = autonomy_fraction(ka, ta) - autonomy_fraction(kb, tb)
    _, lo, hi = _interval(diff, autonomy_fraction(ka_b, ta_b) - autonomy_fraction(kb_b, tb_b))
    out: dict = {
        "roads": len(a),
        "road_seeds": len(boot.picks[0]),
        "autonomy_pct": {
            "a": 100 * float(autonomy_fraction(ka, ta)),
            "b": 100 * float(autonomy_fraction(kb, tb)),
            "diff": 100 * float(diff),
            "ci95": [100 * lo, 100 * hi],
        },
    }
    for name in LOWER_IS_BETTER:
        xa, xb = column(a, name), column(b, name)
        (sa, sa_b), (sb, sb_b) = boot.sums(xa), boot.sums(xb)
        d, dlo, dhi = _interval((sa - sb) / n, (sa_b - sb_b) / n_b)
        out[name] = {
            "a": sa / n,
            "b": sb / n,
            "diff": d,
            "ci95": [dlo, dhi],
            "a_better_roads": int(np.sum(xa < xb)),
            "b_better_roads": int(np.sum(xb < xa)),
        }
    if out["road_seeds"] < MIN_ROADS:
        for m in out.values():
            if isinstance(m, dict):
                m["ci95"] = None
    return out
