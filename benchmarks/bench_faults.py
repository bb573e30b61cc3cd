"""Steering through camera faults: the temporal model (frame-missing flag, trained with
fault augmentation) against PilotNet holding its last output, closed loop and offline.

    python benchmarks/bench_faults.py --work /tmp/faults --minutes 6 --epochs 12 \
        [--seeds 0 --roads 10 --road-seconds 60 --faults blackout:0.5@10 \
         --also-faults blackout:1@10 --clean --models pilotnet,cnn_lstm,cnn_lstm_plain \
         --drive-models pilotnet,cnn_lstm]

One recording (simulator seed 0) and the demo's cache and recipes; each model is trained
once per seed with `data.faults=TRAIN_FAULTS` (PilotNet, which cannot be told a frame is
missing, only gets the blobs of it) and `cnn_lstm` also with `model.missing_input=true`.
Both then drive the same held-out roads with the same camera faults (`drive --faults`),
and are paired road by road; offline, both are scored on the cache's test block with the
same faults drawn over it (`evaluate --faults`): RMSE inside fault events vs clean
frames, and each output (steering, speed, target_speed, torque) against predict-zero,
predict-mean, the log's own last good value held through each fault (`label_held`) and
the same runs shown every frame (`<run>_sighted`: what a blind model is up against).
Resumable: finished runs, drives and evaluations are reused.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from steertime.atomic import write_json
from steertime.data.faults import parse_faults
from steertime.demo import RECIPES, demo_train_config, prepare_demo_cache
from steertime.evaluate import evaluate
from steertime.sim import DriveReport, RoadResult, compare_drives, drive, heldout_seeds, simulate
from steertime.stream import Predictor
from steertime.train import train

TRAIN_FAULTS = "blackout:0.5@6,blackout:1@15,drop:0.3@15,glare:0.5@20,freeze:0.3@20,blob:4@40"


def recipe(model: str, train_faults: str) -> list[str]:
    """The demo's recipe of the model's base, with the fault training (and the flag)."""
    base = "cnn_lstm" if model.startswith("cnn_lstm") else model
    out = [*RECIPES[base]]
    if model == "cnn_lstm_plain":  # today's demo recipe: no flag, no faults in training
        return out
    out.append(f"data.faults={train_faults}")
    if base == "cnn_lstm":
        out.append("model.missing_input=true")
    return out


def _held(true: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """The true value of the last good frame, held through each fault window."""
    held = true.copy()
    for i in np.flatnonzero(bad):
        if i:
            held[i] = held[i - 1]
    return held


def offline(a, cache: Path, runs: list[Path], faults: str) -> dict:
    """RMSE inside fault events and on clean frames per output and model, pooled over the
    fault schedules `--fault-seeds` (each a different draw of the same spec)."""
    sq: dict = {}  # (output, model, "fault"|"clean") -> [sum of squares, frames]
    per_seed = {}
    # The same models shown every frame: how well each steers on the frames the schedules
    # black out when it can see them (what a blind model is up against).
    _, seen, _ = evaluate(runs[0], cache, "test", runs[1:])
    for fs in (int(x) for x in a.fault_seeds.split(",")):
        r, frames, layout = evaluate(runs[0], cache, "test", runs[1:], faults=faults, fault_seed=fs)
        bad = frames.fault != 0
        per_seed[fs] = {"fault_frames": int(bad.sum()), "frames": int(len(bad))}
        for name, e in r["outputs"].items():
            true = frames.truth[name]
            preds = {m: p[name] for m, p in frames.preds.items() if name in p}
            preds |= {f"{m}_sighted": p[name] for m, p in seen.preds.items() if name in p}
            preds["predict_zero"] = np.zeros_like(true)
            preds["predict_mean"] = np.full_like(true, layout.mean[layout.index(name)])
            preds["label_held"] = _held(true, bad)  # the log's own last value, held
            # also against the log `lead` frames later (the expert without its reaction
            # delay, what a led run was taught): holding an output delays it, which the
            # same-frame label (itself 0.2 s late) rewards
            lead = max(frames.leads.values())
            targets = {"": true, **({"_led": frames.truth_led[lead][name]} if lead else {})}
            for m, pred in preds.items():
                for sfx, tgt in targets.items():
                    for part, mask in (("fault", bad), ("clean", ~bad)):
                        acc = sq.setdefault(f"{name}|{m}|{part}{sfx}", [0.0, 0])
                        acc[0] += float(np.sum((pred[mask] - tgt[mask]) ** 2))
                        acc[1] += int(mask.sum())
            per_seed[fs][name] = {
                m: {k: sc.get(k) for k in ("rmse_fault", "rmse_clean")}
                for m, sc in e["models"].items()
            }
    pooled: dict = {}
    for key, (ss, n) in sq.items():
        name, m, part = key.split("|")
        pooled.setdefault(name, {}).setdefault(m, {})[f"rmse_{part}"] = math.sqrt(ss / max(n, 1))
    lead = max(frames.leads.values())
    return {"faults": faults, "led_by": lead, "pooled": pooled, "per_fault_seed": per_seed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--models", default="pilotnet,cnn_lstm")
    ap.add_argument("--roads", type=int, default=10)
    ap.add_argument("--road-seconds", type=float, default=60.0)
    ap.add_argument("--road-seed", type=int, default=0)
    ap.add_argument("--faults", default="blackout:0.5@10", help="faults while driving")
    ap.add_argument("--also-faults", default="", help="a second fault setting to drive")
    ap.add_argument("--train-faults", default=TRAIN_FAULTS)
    ap.add_argument("--clean", action="store_true", help="also drive without faults")
    ap.add_argument("--drive-models", default="", help="models to drive (default: --models)")
    ap.add_argument("--offline-faults", default="", help="faults offline (default: --faults)")
    ap.add_argument("--fault-seeds", default="0", help="offline fault schedules, pooled")
    ap.add_argument(
        "--variant",
        nargs="*",
        default=[],
        help="NAME=KEY=VAL[;KEY=VAL]: extra training overrides of the model NAME in --models "
        "(its base model is the registered name NAME starts with, e.g. cnn_lstm_seq10)",
    )
    a = ap.parse_args()
    parse_faults(a.faults), parse_faults(a.also_faults), parse_faults(a.train_faults)
    rec, cache = a.work / "drive", a.work / "cache"
    if not rec.exists():
        simulate(rec, a.minutes, seed=0)
    if not (cache / "manifest.json").exists():
        prepare_demo_cache(rec, cache)
    roads = heldout_seeds(a.road_seed, a.roads)
    models = a.models.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    settings = [a.faults] + ([a.also_faults] if a.also_faults else []) + ([""] if a.clean else [])
    result: dict = {"args": {k: str(v) for k, v in vars(a).items()}, "closed_loop": {}}
    runs: dict[str, list[Path]] = {m: [] for m in models}
    extra = {v.split("=", 1)[0]: v.split("=", 1)[1].split(";") for v in a.variant}
    for m in models:
        for seed in seeds:
            run = a.work / "runs" / f"{m}_s{seed}"
            if not (run / "checkpoints" / "best").exists():
                t0 = time.time()
                cfg = demo_train_config(
                    "cnn_lstm" if m.startswith("cnn_lstm") else m,
                    a.epochs,
                    cache,
                    run,
                    [*recipe(m, a.train_faults), *extra.get(m, []), f"train.seed={seed}"],
                )
                train(cfg, progress=False)
                print(f"trained {run.name} in {time.time() - t0:.0f} s", flush=True)
            runs[m].append(run)
    for faults in dict.fromkeys(settings):
        tag = faults or "clean"
        pooled: dict[str, list[RoadResult]] = {}
        for m in a.drive_models.split(",") if a.drive_models else models:
            rep = DriveReport()
            for run in runs[m]:
                out = a.work / f"drive_{run.name}_{tag.replace(':', '-')}_r{a.road_seed}.json"
                if not out.exists():
                    t0 = time.time()
                    s = drive(
                        Predictor.from_run(run), roads, a.road_seconds, faults=parse_faults(faults)
                    ).summary()
                    write_json(out, {**s, "wall_s": time.time() - t0})
                    print(f"drove {run.name} ({tag}) in {time.time() - t0:.0f} s", flush=True)
                rep.roads += [RoadResult(**r) for r in json.loads(out.read_text())["per_road"]]
            pooled[m] = rep.roads
            summary = {k: v for k, v in rep.summary().items() if k != "per_road"}
            result["closed_loop"].setdefault(tag, {})[m] = summary
            print(tag, m, json.dumps(summary), flush=True)
        if "pilotnet" in pooled and "cnn_lstm" in pooled:
            c = compare_drives(pooled["cnn_lstm"], pooled["pilotnet"])
            result["closed_loop"][tag]["paired_cnn_lstm_minus_pilotnet"] = c
            print(tag, "paired", json.dumps(c["autonomy_pct"]), flush=True)
    # offline: the test block with the same faults for every run, several fault schedules
    offline_faults = a.offline_faults or a.faults
    for seed_i, seed in enumerate(seeds):
        tag = f"{'+'.join(models)}_{offline_faults.replace(':', '-')}_f{a.fault_seeds}_s{seed}"
        out = a.work / f"offline_{tag}.json"
        if not out.exists():
            write_json(out, offline(a, cache, [runs[m][seed_i] for m in models], offline_faults))
        result.setdefault("offline", {})[seed] = json.loads(out.read_text())
        print("offline seed", seed, json.dumps(result["offline"][seed], indent=1), flush=True)
    write_json(a.work / "bench_faults.json", result)


if __name__ == "__main__":
    main()
