"""Donkeycar 5.3 on exactly the records steertime trains on, scored on the same frames.

Runs in its own venv (Donkeycar pins TensorFlow 2.15; it is never a dependency of
steertime):

    python3 -m venv /tmp/dkvenv && /tmp/dkvenv/bin/pip install "donkeycar[pc]==5.3.0"
    /tmp/dkvenv/bin/python benchmarks/peer_donkeycar/run.py --work /tmp/sess \\
        [--protocols sessions,tub] [--models linear,rnn,3d] [--folds 23-01-12_2] [--seeds 0,1,2]
        [--transfer-from ../shared/data/donkey_rc_sessions]

For each fold of `bench_sessions.py` (same --work): a tub *view* of the training records
(a manifest that marks the rest deleted; catalogs and images are symlinks, the source is
never modified) is trained with `donkeycar.pipeline.training.train` and Donkeycar's
defaults (`templates/cfg_complete.py`: 120x160, batch 128, 80/20 random train/val split,
up to 100 epochs, early stopping after 5); then the best model is loaded with
`get_model_by_type` and run frame by frame through its own `KerasPilot.run` over the
held-out records in time order, images read by `donkeycar.utils.load_image` as in the car.
Writes `WORK/peer_donkeycar/{protocol}_predictions.csv` (timestamp_ms, record, truth,
`donkey_<model>:steering|throttle`) and `{protocol}_timing.json`; `bench_sessions.py`
then scores them beside steertime's models. With `--seeds`, each model is trained once per
seed (Python, NumPy — which draws Donkeycar's random train/val split — and TensorFlow
seeded), columns `donkey_<model>_s<seed>` (columns written by earlier runs into the same
--work are kept): one Donkeycar run is not a number to beat, its
test RMSE on the tub moved by 0.02 between two runs of the same command.

With `--transfer-from TUB`, each model is first trained once on the whole of another tub
(Donkeycar's defaults; the first of --seeds as its seed) and every fold's training starts from
it (`donkeycar.pipeline.training.train(..., transfer=...)`, what `donkey train --transfer`
does; with the default `FREEZE_LAYERS = False` every layer trains on): Donkeycar's
counterpart of steertime's `train.init_from`. Columns `donkey_<model>_transfer[_s<seed>]`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
SESSIONS = ("23-01-12_0", "23-01-12_1", "23-01-12_2")
TUB_TRAIN_RECORDS = 4012


def records(tub: Path) -> list[dict]:
    """Every record of a tub in catalog order (Donkeycar's order; deletions not applied)."""
    data = tub / "data"
    meta = json.loads((data / "manifest.json").read_text().splitlines()[4])
    out = []
    for name in meta["paths"]:
        with open(data / name) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def view(src: Path, out: Path, hide: set[int]) -> Path:
    """The same tub view as `steertime.data.readers.donkey.tub_view` (no steertime here)."""
    data = out / "data"
    if data.is_dir():
        return out
    data.mkdir(parents=True)
    lines = (src / "data" / "manifest.json").read_text().splitlines()
    meta = json.loads(lines[4])
    meta["deleted_indexes"] = sorted(set(meta.get("deleted_indexes", [])) | hide)
    lines[4] = json.dumps(meta)
    for p in (src / "data").iterdir():
        if p.name != "manifest.json":
            os.symlink(p.resolve(), data / p.name)
    (data / "manifest.json").write_text("\n".join(lines) + "\n")
    return out


def folds(protocol: str, work: Path, only: list[str]) -> list[tuple[str, Path, list[dict]]]:
    """(fold name, training tub view, held-out records in time order)."""
    peer = work / "peer_donkeycar"
    if protocol == "sessions":
        src = SHARED / "donkey_rc_sessions"
        recs = records(src)
        out = []
        for s in SESSIONS:
            if only and s not in only:
                continue
            test = [r for r in recs if r["_session_id"] == s]
            hide = {r["_index"] for r in test}
            out.append((s, view(src, peer / f"view_{s}", hide), test))
        return out
    src = SHARED / "donkey_rc_tub"
    recs = records(src)
    test = [r for r in recs if r["_index"] >= TUB_TRAIN_RECORDS]
    train = view(src, peer / "view_tub", {r["_index"] for r in test})
    return [("last20", train, test)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--protocols", default="sessions,tub")
    ap.add_argument("--models", default="linear,rnn,3d")
    ap.add_argument("--folds", default="", help="only these fold names (default: all)")
    ap.add_argument("--seeds", default="", help="e.g. 0,1,2 (default: one unseeded run)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="TensorFlow intra-op threads (0: its default, every core); 1 to time it beside "
        "a one-thread steertime run on the same machine",
    )
    ap.add_argument(
        "--transfer-from",
        type=Path,
        default=None,
        help="another tub: train each model on all of it once, then start every fold from it",
    )
    a = ap.parse_args()

    import random

    import donkeycar as dk
    import tensorflow as tf
    from donkeycar.pipeline.training import train

    if a.threads:  # before TensorFlow builds its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from donkeycar.utils import get_model_by_type, load_image

    cfg = dk.load_config(str(Path(dk.__file__).parent / "templates" / "cfg_complete.py"))
    peer = a.work / "peer_donkeycar"
    peer.mkdir(parents=True, exist_ok=True)

    def set_seed(seed: int | None) -> None:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            tf.random.set_seed(seed)

    def fit(model: Path, tub: Path, m: str, seed: int | None, start: str | None = None) -> float:
        """Train `m` on `tub` into `model` once (a rerun finds it); its training seconds."""
        secs = model.with_suffix(".train_seconds")
        if not secs.exists():
            set_seed(seed)
            t0 = time.perf_counter()
            # tub_paths: the folder with manifest.json
            train(cfg, str(tub / "data"), str(model), m, transfer=start)
            secs.write_text(f"{time.perf_counter() - t0:.1f}\n")
        return float(secs.read_text())

    def pretrained(src: Path, m: str, seed: int | None) -> str:
        """`m` trained on all of another tub, once (its seconds beside it, not in the folds')."""
        model = peer / f"transfer_{src.resolve().name}_{m}.h5"
        fit(model, src, m, seed)
        return str(model)

    for protocol in a.protocols.split(","):
        rows, timing = [], {}
        for name, tub, test in folds(protocol, a.work, [f for f in a.folds.split(",") if f]):
            imgs = tub / "data" / "images"
            fold = {
                "fold": name,
                "record": [r["_index"] for r in test],
                "timestamp_ms": [r["_timestamp_ms"] for r in test],
                "true_steering": [r["user/angle"] for r in test],
                "true_throttle": [r["user/throttle"] for r in test],
            }
            seeds = [int(x) for x in a.seeds.split(",") if x] or [None]
            for m, seed in [(m, s) for m in a.models.split(",") for s in seeds]:
                start = pretrained(a.transfer_from, m, seeds[0]) if a.transfer_from else None
                tag = (m if start is None else f"{m}_transfer") + (
                    "" if seed is None else f"_s{seed}"
                )
                model = peer / f"{protocol}_{name}_{tag}.h5"
                train_s = fit(model, tub, m, seed, start)
                kl = get_model_by_type(m, cfg)
                kl.load(str(model))
                out, step = [], []
                for r in test:  # in time order, as the car sees them
                    img = load_image(str(imgs / r["cam/image_array"]), cfg)
                    t1 = time.perf_counter()
                    out.append(kl.run(img))
                    step.append(time.perf_counter() - t1)
                angle, throttle = np.asarray(out, dtype=float).T[:2]
                fold[f"donkey_{tag}:steering"], fold[f"donkey_{tag}:throttle"] = angle, throttle
                timing[f"{name}:{tag}"] = {
                    "train_seconds": train_s,
                    "ms_per_frame_median": 1000 * float(np.median(step)),
                }
                print(protocol, name, tag, timing[f"{name}:{tag}"], flush=True)
            rows.append(pd.DataFrame(fold))
        f, t = peer / f"{protocol}_predictions.csv", peer / f"{protocol}_timing.json"
        new = pd.concat(rows).set_index(["fold", "record"])
        if f.exists():  # keep what earlier runs wrote (other models, folds, --transfer-from)
            new = new.combine_first(pd.read_csv(f).set_index(["fold", "record"]))
            timing = json.loads(t.read_text()) | timing if t.exists() else timing
        new = new.reset_index()
        new.to_csv(f.with_suffix(".tmp"), index=False)
        os.replace(f.with_suffix(".tmp"), f)
        t.with_suffix(".tmp").write_text(json.dumps(timing, indent=1))
        os.replace(t.with_suffix(".tmp"), t)


if __name__ == "__main__":
    main()
