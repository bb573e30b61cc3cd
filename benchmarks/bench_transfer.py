"""Transfer learning: feature extraction speed, epoch time over cached features vs the
end-to-end `cnn_lstm`, and accuracy on the real datasets' held-out blocks.

    python benchmarks/bench_transfer.py --work /tmp/acc [--epochs 30]

Reuses the caches (and the pilotnet / cnn_lstm runs) of bench_accuracy.py in --work.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from steertime.data import Cache
from steertime.data.features import extract_features
from steertime.train import TrainConfig, apply_overrides, train

DATASETS = {"udacity_sim_track1": ["steering", "speed"], "donkey_rc_tub": ["steering", "throttle"]}


def epoch_fps(run: Path) -> float:
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    return sorted(float(r["frames_per_s"]) for r in rows)[len(rows) // 2]


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_accuracy import evaluate_run, rmse_table

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args()
    res: dict = {}
    for ds, outputs in DATASETS.items():
        cache_dir = a.work / f"cache_{ds}"
        cache = Cache.open(cache_dir)
        feats = cache_dir / "features" / "efficientnet_lite0"
        t0 = time.perf_counter()
        extract_features(cache, feats)
        r = {"extract_fps": cache.n_frames / (time.perf_counter() - t0)}
        for seq in (10, 50):
            run = a.work / f"run_{ds}_feat_lstm_seq{seq}"
            if not (run / "checkpoints" / "best").exists():
                cfg = apply_overrides(
                    TrainConfig(),
                    [
                        "model.name=feat_lstm",
                        f"train.seq_len={seq}",
                        f"train.epochs={a.epochs}",
                        "train.patience=8",
                        f"data.outputs={','.join(outputs)}",
                        f"data.features={feats}",
                        f"train.batch_size={16 if seq == 10 else 4}",
                    ],
                )
                cfg.data.cache, cfg.out = str(cache_dir), str(run)
                train(cfg, progress=False)
            preds, meta = evaluate_run(run, cache)
            r[f"feat_lstm_seq{seq}"] = {
                **rmse_table(cache, outputs, preds),
                "best_epoch": meta.epoch,
                "train_fps_median": epoch_fps(run),
            }
        e2e = a.work / f"run_{ds}_cnn_lstm"
        if (e2e / "metrics.csv").is_file():
            r["cnn_lstm_train_fps_median"] = epoch_fps(e2e)
            r["speedup_seq10"] = (
                r["feat_lstm_seq10"]["train_fps_median"] / r["cnn_lstm_train_fps_median"]
            )
        res[ds] = r
        print(ds, json.dumps(r), flush=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
