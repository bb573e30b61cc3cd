"""Would one run's own epochs, averaged, steer better than its best epoch alone?

    python benchmarks/snapshots.py --data CACHE --held-out TEST_CACHE --out W \
        --seeds 0,1 [-- train overrides, e.g. --set train.epochs=30]

Trains `cnn_lstm` (or `--model`) once per seed through the Python API with the same
recipe as `steertime train`, saving every epoch's weights as a checkpoint folder
(`W/sN/snapshots/eNN`), then streams each snapshot over the cache's validation segments and
over all of TEST_CACHE. Selection uses validation only; printed per seed and pooled:
the kept (best-validated) epoch, the prediction average of the K best-validated epochs
(a snapshot ensemble: K model steps per frame), and the weight average of those K
(one model step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from steertime.cli.app import app
from steertime.data import Cache
from steertime.evaluate.run import predict_on_cache
from steertime.models.checkpoint import load_model, model_meta, save_checkpoint
from steertime.train import loop

KS = (2, 3, 5, 8)


def _patch_snapshots() -> None:
    """Every epoch's weights saved beside the run (the loop keeps only the best)."""
    original = loop._Training.end_of_epoch

    def end_of_epoch(self, epoch, *a, **kw):
        original(self, epoch, *a, **kw)
        if self.info.is_main:
            folder = self.run / "snapshots" / f"e{epoch:02d}"
            save_checkpoint(folder, self.model, model_meta(self.model, self.layout, {}))

    loop._Training.end_of_epoch = end_of_epoch


def _steer(run: Path, cache: Cache, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    f, _ = predict_on_cache(run, cache, split, threads=1)
    (m,) = f.preds
    return f.preds[m]["steering"], f.truth["steering"]


def _soup(folders: list[Path], out: Path) -> Path:
    """The weights of `folders` averaged into one checkpoint folder (same architecture)."""
    model, meta = load_model(folders[0])
    states = [load_model(f)[0].state_dict() for f in folders]
    avg = {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
        if v.dtype.is_floating_point
        else v
        for k, v in states[0].items()
    }
    model.load_state_dict(avg)
    save_checkpoint(out, model, model_meta(model, meta.layout, {}))
    return out


def rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e**2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--held-out", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="cnn_lstm")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    _patch_snapshots()
    val_cache, test_cache = Cache.open(a.data), Cache.open(a.held_out)
    pooled: dict[str, list[np.ndarray]] = {}
    for seed in (int(s) for s in a.seeds.split(",")):
        run = a.out / f"s{seed}"
        if not (run / "checkpoints" / "best").exists():
            # The CLI itself, in this process, so the recipe is exactly a user's.
            args = ["train", "--data", str(a.data), "--model", a.model, "--out", str(run)]
            args += ["--outputs", "steering,throttle", "--epochs", str(a.epochs)]
            sets = ["train.patience=8", "train.threads=1", f"train.seed={seed}", *a.set]
            args += [x for s in sets for x in ("--set", s)]
            try:
                app(args, standalone_mode=False)
            except SystemExit as e:
                if e.code:
                    raise
        snaps = sorted((run / "snapshots").iterdir())
        val = {s.name: _steer(s, val_cache, "val") for s in snaps}
        vscore = {k: rms(p - t) for k, (p, t) in val.items()}
        order = sorted(vscore, key=vscore.get)
        test = {s.name: _steer(s, test_cache, None) for s in snaps}
        truth = next(iter(test.values()))[1]
        rows = {"best": test[order[0]][0]}
        for k in KS:
            top = order[:k]
            rows[f"avg_top{k}"] = np.mean([test[n][0] for n in top], axis=0)
            soup = _soup([run / "snapshots" / n for n in top], run / f"soup_top{k}")
            rows[f"soup_top{k}"] = _steer(soup, test_cache, None)[0]
        report = {
            "seed": seed,
            "val": {n: round(vscore[n], 4) for n in order},
            "held_out": {k: round(rms(p - truth), 4) for k, p in rows.items()},
        }
        print(json.dumps(report))
        for k, p in rows.items():
            pooled.setdefault(k, []).append(p - truth)
    print(
        "pooled:",
        json.dumps({k: round(rms(np.concatenate(v)), 4) for k, v in pooled.items()}),
    )


if __name__ == "__main__":
    main()
