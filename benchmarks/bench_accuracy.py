"""Accuracy on real data with a held-out final time block (tail split, guard 50).

    python benchmarks/bench_accuracy.py --work /tmp/acc [--epochs 30] [--models ...]
        [--set data.flip=true data.brightness=0.3 --tag _aug]

For each dataset: prepare a 66x200 cache, train each model (stateful TBPTT, early
stopping on val steering RMSE, best checkpoint kept), then run the best checkpoint
streaming over the test block and report RMSE per output next to predict-zero and
predict-the-training-mean computed on the same frames.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from steertime.atomic import write_json, write_text
from steertime.data import Cache, PrepareConfig, SplitConfig, prepare
from steertime.models.checkpoint import RunMeta, load_model
from steertime.stream.segments import predict_segment
from steertime.train import TrainConfig, apply_overrides, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "udacity_sim_track1": ["steering", "speed"],
    "donkey_rc_tub": ["steering", "throttle"],
}


def rmse_table(cache: Cache, outputs: list[str], preds: np.ndarray | None, const=None) -> dict:
    segs = cache.segments("test")
    truth = np.concatenate(
        [
            np.stack([cache.drives[s.drive].signals[n][s.start : s.stop] for n in outputs], -1)
            for s in segs
        ]
    )
    p = np.broadcast_to(np.asarray(const), truth.shape) if preds is None else preds
    out = {}
    units = cache.drives[0].units
    for k, n in enumerate(outputs):
        r = float(np.sqrt(np.mean((p[:, k] - truth[:, k]) ** 2)))
        out[n] = r
        if units[n].to_radians:
            out[f"{n}_rad"] = r * units[n].to_radians
    return out


def evaluate_run(run: Path, cache: Cache) -> tuple[np.ndarray, RunMeta]:
    model, meta = load_model(run)
    layout = meta.layout
    preds = np.concatenate(
        [
            layout.denormalize(predict_segment(model, cache, s, torch.device("cpu")))
            for s in cache.segments("test")
        ]
    )
    return preds, meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--models", default="pilotnet,cnn_lstm,cnn_lstm_ar")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--set", nargs="*", default=[], help="extra training overrides")
    ap.add_argument("--tag", default="", help="suffix of run folders and results file")
    a = ap.parse_args()
    results = {}
    for ds in a.datasets.split(","):
        outputs = DATASETS[ds]
        cache_dir = a.work / f"cache_{ds}"
        if not cache_dir.exists():
            prepare(
                SHARED / ds, cache_dir, PrepareConfig(split=SplitConfig("tail", 0.15, 0.15, 50))
            )
        cache = Cache.open(cache_dir)
        train_segs = cache.segments("train")
        mean = [
            float(
                np.concatenate(
                    [cache.drives[s.drive].signals[n][s.start : s.stop] for s in train_segs]
                ).mean()
            )
            for n in outputs
        ]
        res = {
            "test_frames": sum(len(s) for s in cache.segments("test")),
            "predict_zero": rmse_table(cache, outputs, None, [0.0] * len(outputs)),
            "predict_mean": rmse_table(cache, outputs, None, mean),
        }
        for m in a.models.split(","):
            run = a.work / f"run_{ds}_{m}{a.tag}"
            if not (run / "checkpoints" / "best").exists():
                cfg = apply_overrides(
                    TrainConfig(),
                    [
                        f"model.name={m}",
                        f"train.epochs={a.epochs}",
                        "train.patience=8",
                        f"data.outputs={','.join(outputs)}",
                        *a.set,
                    ],
                )
                cfg.data.cache, cfg.out = str(cache_dir), str(run)
                t0 = time.time()
                train(cfg, progress=False)
                write_text(run / "train_seconds.txt", f"{time.time() - t0:.0f}\n")
            preds, meta = evaluate_run(run, cache)
            res[m] = {
                **rmse_table(cache, outputs, preds),
                "best_epoch": meta.epoch,
                "train_seconds": float((run / "train_seconds.txt").read_text()),
            }
            print(ds, m, json.dumps(res[m]), flush=True)
        results[ds] = res
    print(json.dumps(results, indent=2))
    write_json(a.work / f"results{a.tag}.json", results)


if __name__ == "__main__":
    main()
