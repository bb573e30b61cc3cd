"""Closed-loop autonomy of `pilotnet` vs `cnn_lstm` over several training seeds.

    python benchmarks/bench_closed_loop_seeds.py --work /tmp/cl6 --minutes 6 --epochs 12 \
        [--seeds 0,1,2 --roads 10 --road-seconds 120 --models pilotnet,cnn_lstm]

One recording (simulator seed 0, `--minutes` of expert driving) and one cache, as in the
demo; then each model is trained once per training seed (`train.seed`) with the demo's
recipe and driven on the same held-out roads. One intervention is 0.5 points of autonomy
on 10 roads x 2 min, so a single training run cannot separate two good models: this
pools the roads of all seeds per model and also lists every seed's result.
Resumable: finished runs (best checkpoint + drive JSON) are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from steertime.atomic import write_json
from steertime.demo import demo_train_config, prepare_demo_cache
from steertime.sim import DriveReport, RoadResult, drive, heldout_seeds, simulate
from steertime.stream import Predictor
from steertime.train import train


def train_and_drive(
    work: Path,
    name: str,
    model: str,
    epochs: int,
    overrides: list[str],
    roads: list[int],
    road_seconds: float,
) -> dict:
    """Train `model` on WORK/cache with the demo's recipe + overrides into WORK/runs/NAME
    (unless its best checkpoint exists), drive it on `roads`, and keep the report in
    WORK/closed_loop_NAME.json; an existing report is reused."""
    run, out = work / "runs" / name, work / f"closed_loop_{name}.json"
    if not out.exists():
        trained = None
        if not (run / "checkpoints" / "best").exists():
            t0 = time.time()
            train(demo_train_config(model, epochs, work / "cache", run, overrides), progress=False)
            trained = time.time() - t0
        report = drive(Predictor.from_run(run), roads, road_seconds).summary()
        write_json(out, {**report, "train_seconds": trained})
    return json.loads(out.read_text())


def _summary(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "per_road"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="pilotnet,cnn_lstm")
    ap.add_argument("--roads", type=int, default=10)
    ap.add_argument("--road-seconds", type=float, default=120.0)
    a = ap.parse_args()
    rec, cache = a.work / "drive", a.work / "cache"
    if not rec.exists():
        simulate(rec, a.minutes, seed=0)
    if not (cache / "manifest.json").exists():
        prepare_demo_cache(rec, cache)
    roads = heldout_seeds(0, a.roads)
    result: dict = {"minutes_of_data": a.minutes, "epochs": a.epochs, "models": {}}
    for model in a.models.split(","):
        per_seed, pooled = {}, DriveReport()
        for seed in (int(s) for s in a.seeds.split(",")):
            report = train_and_drive(
                a.work,
                f"{model}_s{seed}",
                model,
                a.epochs,
                [f"train.seed={seed}"],
                roads,
                a.road_seconds,
            )
            per_seed[seed] = _summary(report)
            pooled.roads += [RoadResult(**r) for r in report["per_road"]]
            print(model, seed, json.dumps(per_seed[seed]), flush=True)
        result["models"][model] = {"pooled": _summary(pooled.summary()), "per_seed": per_seed}
    write_json(a.work / "closed_loop_seeds.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
