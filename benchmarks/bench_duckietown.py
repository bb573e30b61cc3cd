"""Duckietown through the bridge: steps/s, and pilotnet vs cnn_lstm closed-loop (issue 22).

    python benchmarks/bench_duckietown.py --steps 2000                # steps/s only
    python benchmarks/bench_duckietown.py --work /tmp/dtw --minutes 15 --epochs 10 \
        --seeds 0 [--episodes 8 --episode-minutes 1] [--set train.seq_len=5]

Needs `steertime duckietown install`. The closed-loop part records the expert on the
training maps (WORK/rec, unless there), prepares WORK/cache (66x200, the top 40 of 120
rows cut: background above the road), trains each model per training seed (demo recipe,
steering only), drives each and the expert on held-out maps/starts, and writes
WORK/duckietown_closed_loop.json with the paired comparison (cnn_lstm minus pilotnet).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from steertime.atomic import write_json
from steertime.data import PrepareConfig, SplitConfig, prepare
from steertime.data.preprocess import FrameSpec
from steertime.demo import demo_train_config
from steertime.sim.compare import compare_drives
from steertime.sim.drive import DriveReport, RoadResult
from steertime.sim.duckietown import loop
from steertime.sim.duckietown.client import Bridge
from steertime.stream import Predictor
from steertime.train import train


def steps_per_second(bridge: Bridge, steps: int, repeats: int = 3) -> dict:
    """Expert driving loop_empty at 120x160: reset, then `steps` steps (each renders);
    median over repeats, protocol and frame transfer included."""
    rates = []
    for r in range(repeats):
        obs = bridge.reset("loop_empty", r + 1, loop.FPS, loop.SIZE)
        t0 = time.perf_counter()
        for _ in range(steps):
            obs = bridge.step(loop.SPEED, loop.expert_omega(obs))
            if obs.done or not obs.in_lane:
                obs = bridge.recover()
        rates.append(steps / (time.perf_counter() - t0))
    return {"steps": steps, "median_steps_per_s": statistics.median(rates), "runs": rates}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--models", default="pilotnet,cnn_lstm")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--episode-minutes", type=float, default=1.0)
    ap.add_argument("--set", nargs="*", default=[], help="training overrides for every run")
    a = ap.parse_args()
    with Bridge() as bridge:
        result: dict = {"bridge": steps_per_second(bridge, a.steps)}
        print(json.dumps(result), flush=True)
        if a.work is None:
            return
        rec, cache = a.work / "rec", a.work / "cache"
        if not rec.exists():
            loop.record(bridge, rec, a.minutes, seed=0)
        if not (cache / "manifest.json").exists():
            frame = FrameSpec(66, 200, 40, 0)
            split = SplitConfig("tail", 0.15, 0.15, guard=20)
            prepare(rec, cache, PrepareConfig(frame=frame, split=split), overwrite=True)
        eps = loop.episodes(0, a.episodes, loop.HELDOUT_MAPS, heldout=True)
        seconds = a.episode_minutes * 60
        expert = loop.drive(bridge, loop.ExpertPolicy(), eps, seconds).summary()
        result["expert"] = {k: v for k, v in expert.items() if k != "per_road"}
        pooled: dict[str, list[RoadResult]] = {}
        result["models"] = {}
        for model in a.models.split(","):
            report = DriveReport()
            for seed in (int(s) for s in a.seeds.split(",")):
                run = a.work / "runs" / f"{model}_s{seed}"
                overrides = ["data.outputs=steering", f"train.seed={seed}", *a.set]
                t0 = time.time()
                if not (run / "checkpoints" / "best").exists():
                    train(demo_train_config(model, a.epochs, cache, run, overrides), progress=False)
                trained = time.time() - t0
                r = loop.drive(bridge, Predictor.from_run(run), eps, seconds)
                report.roads += r.roads
                s = r.summary()
                write_json(a.work / f"drive_{model}_s{seed}.json", s)
                print(
                    model,
                    seed,
                    f"train {trained:.0f}s",
                    json.dumps({k: v for k, v in s.items() if k != "per_road"}),
                    flush=True,
                )
            pooled[model] = report.roads
            result["models"][model] = {k: v for k, v in report.summary().items() if k != "per_road"}
        names = list(pooled)
        if len(names) == 2:
            result["paired"] = {
                "a": names[1],
                "b": names[0],
                **compare_drives(pooled[names[1]], pooled[names[0]]),
            }
        write_json(a.work / "duckietown_closed_loop.json", result)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
