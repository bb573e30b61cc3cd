"""Held-out sessions, as RC builders use a model: steertime against PilotNet and Donkeycar.

    python benchmarks/bench_sessions.py --work /tmp/sess [--protocols sessions,tub]
        [--models pilotnet,cnn_lstm] [--epochs N] [--jobs 2]

Everything a user would type goes through the `steertime` CLI (prepare, train, evaluate):

- `sessions`: `donkey_rc_sessions`, leave one session out — for each of the three
  sessions, `prepare --split session --test-session S` (validation: the final 15% of each
  training session), train every model, `evaluate` on the held-out session;
- `tub`: `donkey_rc_tub`, Donkeycar's split — records 0–4011 (the first 80%) for training
  and validation (tail split, 20% val), records 4012–5014 for test. The benchmark writes
  two *views* of the tub under --work (a manifest whose `deleted_indexes` hides the other
  part; catalogs and images are symlinks), so the source is never modified.

Each model trains with its protocol's recipe (`RECIPES`, the flags a user passes). The per-frame
predictions of every fold are pooled, and the table gives pooled RMSE, each model's ratio
to PilotNet with a paired block-bootstrap 95% interval (2 s blocks, never across
sessions), throttle RMSE, training time and time to the best checkpoint, beside the label
oracles of `label_noise.py`. When `benchmarks/peer_donkeycar/run.py` has written its
predictions for the same folds into --work, Donkeycar's models join the table, scored on
the same frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from label_noise import floors
from steertime.atomic import write_json, write_text
from steertime.data.readers.donkey import tub_view
from steertime.evaluate import metrics as M

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SESSIONS = ("23-01-12_0", "23-01-12_1", "23-01-12_2")
TUB_TRAIN_RECORDS = 4012  # Donkeycar's split: records 0-4011 train, 4012-5014 test
OUTPUTS = "steering,throttle"
BLOCK = 40  # 2 s at 20 Hz
# What a user passes to `steertime prepare` and `steertime train`, per protocol (chosen on
# validation: docs/benchmarks.md). Mirroring is what lets sessions driven in opposite
# directions teach each other; on the single-direction tub it costs 25% (val 0.46 vs 0.37).
FRAME = ["--size", "80x160", "--crop", "40,0"]
FLIP = ["--set", "data.flip=true"]
RECIPES: dict[str, dict[str, list[str]]] = {
    "sessions": {m: ["--model", m, *FLIP] for m in ("pilotnet", "cnn_lstm", "motion_lstm")},
    "tub": {m: ["--model", m] for m in ("pilotnet", "cnn_lstm", "motion_lstm")},
}
EPOCHS = {"sessions": 20, "tub": 30}  # the tub's validation RMSE still falls at epoch 20


def steertime(*args: str, log: Path) -> float:
    """Run one CLI command (its output to `log`); returns wall seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(
            [sys.executable, "-m", "steertime", *args], stdout=f, stderr=subprocess.STDOUT
        )
    if r.returncode:
        raise SystemExit(f"steertime {' '.join(args)} failed ({r.returncode}); see {log}")
    return time.perf_counter() - t0


def folds(protocol: str, work: Path) -> list[dict]:
    """Each fold: a name, the cache to prepare (source + split flags) and what to score."""
    if protocol == "sessions":
        src = SHARED / "donkey_rc_sessions"
        return [
            {
                "name": s,
                "train": (src, ["--split", "session", "--test-session", s]),
                "test": None,  # the cache's own test split
            }
            for s in SESSIONS
        ]
    src = SHARED / "donkey_rc_tub"
    n = 5015
    train, test = work / "tub_train", work / "tub_test"
    if not train.exists():
        tub_view(src, train, set(range(TUB_TRAIN_RECORDS, n)))
        tub_view(src, test, set(range(TUB_TRAIN_RECORDS)))
    return [
        {
            "name": "last20",
            "train": (train, ["--split", "tail", "--val", "0.2", "--test", "0"]),
            "test": (test, ["--split", "tail", "--val", "0", "--test", "0"]),
        }
    ]


def run_fold(
    fold: dict, folder: Path, models: list[str], recipes: dict, epochs: int, jobs: int
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "cache"
    src, split = fold["train"]
    if not cache.exists():
        steertime("prepare", str(src), "--out", str(cache), *FRAME, *split, log=folder / "p.log")
    score_on, score_split = cache, "test"
    if fold["test"] is not None:
        score_on, score_split = folder / "cache_test", "all"
        tsrc, tsplit = fold["test"]
        if not score_on.exists():
            steertime(
                "prepare", str(tsrc), "--out", str(score_on), *FRAME, *tsplit, log=folder / "pt.log"
            )

    def train(m: str) -> float:
        run = folder / m
        if not (run / "checkpoints" / "best").exists():
            secs = steertime(
                "train",
                "--data",
                str(cache),
                "--outputs",
                OUTPUTS,
                "--epochs",
                str(epochs),
                "--set",
                "train.patience=8",
                "--set",
                f"train.threads={max(1, 2 // jobs)}",
                *recipes[m],
                "--out",
                str(run),
                log=folder / f"{m}.log",
            )
            write_text(run / "train_seconds.txt", f"{secs:.1f}\n")
        return float((run / "train_seconds.txt").read_text())

    with ThreadPoolExecutor(jobs) as pool:
        seconds = dict(zip(models, pool.map(train, models), strict=True))
    ev = folder / "eval"
    runs = [str(folder / m) for m in models]
    steertime(
        "evaluate",
        runs[-1],
        "--data",
        str(score_on),
        "--split",
        score_split,
        *[a for r in runs[:-1] for a in ("--compare", r)],
        "--out",
        str(ev),
        log=folder / "eval.log",
    )
    preds = pd.read_parquet(ev / "predictions.parquet")
    preds["fold"] = fold["name"]
    to_best = {}
    for m in models:
        mc = pd.read_csv(folder / m / "metrics.csv")
        best = int(mc["val_rmse_steering"].idxmin())
        to_best[m] = float(mc["seconds"].iloc[: best + 1].sum())
    return {"preds": preds, "train_seconds": seconds, "seconds_to_best": to_best}


def peer_predictions(work: Path, protocol: str, preds: pd.DataFrame) -> list[str]:
    """Join Donkeycar's per-frame predictions (peer_donkeycar/run.py) on the frame time.

    Frames of folds Donkeycar was not run on stay NaN; they are left out of its rows."""
    f = work / "peer_donkeycar" / f"{protocol}_predictions.csv"
    if not f.is_file():
        return []
    peer = pd.read_csv(f)
    key = (preds["t"] * 1000).round().astype("int64")
    names = []
    for col in [c for c in peer.columns if c.endswith(":steering") or c.endswith(":throttle")]:
        lookup = dict(zip(peer["timestamp_ms"].astype("int64"), peer[col], strict=True))
        preds[col] = key.map(lookup)
        names.append(col.split(":")[0])
    return sorted(set(names))


def _row(preds: pd.DataFrame, m: str, ref: str) -> dict:
    """RMSE of model `m` on these frames, and its ratio to `ref` with a paired interval."""
    true = preds["true_steering"].to_numpy()
    groups = preds["fold"].to_numpy()

    def err(name: str) -> np.ndarray:
        return (0 if name == "predict_zero" else preds[f"{name}:steering"].to_numpy()) - true

    e, r = err(m), err(ref)
    rmse = float(np.sqrt(np.mean(e**2)))
    return {
        "steering": rmse,
        "steering_ci95": M.block_bootstrap_rmse(e, BLOCK),
        f"vs_{ref}": rmse / float(np.sqrt(np.mean(r**2))),
        f"vs_{ref}_ci95": M.block_bootstrap_ratio(e, r, BLOCK, groups=groups),
        "per_fold": {
            f: float(np.sqrt(np.mean(e[groups == f] ** 2))) for f in dict.fromkeys(groups)
        },
        **(
            {"throttle": M.rmse(preds[f"{m}:throttle"], preds["true_throttle"])}
            if f"{m}:throttle" in preds
            else {}
        ),
    }


def memory_oracle(preds: pd.DataFrame, lags: tuple[int, ...]) -> float:
    """What the truth's own past could add to PilotNet: RMSE of a least-squares fit, on the
    test frames themselves (optimistic), of the angle from PilotNet's prediction and the
    *true* angle `lags` frames earlier, per drive. With `lags=()` it only recalibrates
    PilotNet (scale and offset), so the difference is what memory of the driver's recent
    steering could be worth at best."""
    sq, n = 0.0, 0
    for _, g in preds.groupby("drive", sort=False):
        y, x = g["true_steering"].to_numpy(), g["pilotnet:steering"].to_numpy()
        k = max(lags, default=0)
        a = np.stack([x[k:], *(y[k - j : len(y) - j] for j in lags), np.ones(len(y) - k)], 1)
        w, *_ = np.linalg.lstsq(a, y[k:], rcond=None)
        sq, n = sq + float(np.sum((a @ w - y[k:]) ** 2)), n + len(y) - k
    return float(np.sqrt(sq / n))


def table(preds: pd.DataFrame, models: list[str], peers: list[str], extra: dict) -> dict:
    segs = [g["true_steering"].to_numpy() for _, g in preds.groupby("drive", sort=False)]
    out: dict = {"frames": len(preds), "oracles": floors(segs)}
    out["oracles"].update(
        pilotnet_recalibrated=memory_oracle(preds, ()),
        pilotnet_plus_true_angle_5_to_8_frames_earlier=memory_oracle(preds, (5, 6, 7, 8)),
        pilotnet_plus_true_angle_1_frame_earlier=memory_oracle(preds, (1,)),
    )
    for m in [*models, "predict_zero"]:
        out[m] = {**_row(preds, m, "pilotnet"), **{k: v.get(m) for k, v in extra.items()}}
    # Donkeycar on the frames it was run on, each model against it on exactly those frames
    for peer in peers:
        mine = preds[preds[f"{peer}:steering"].notna()]
        out[f"vs_{peer}"] = {
            "frames": len(mine),
            "folds": sorted(set(mine["fold"])),
            "oracles": floors([g["true_steering"].to_numpy() for _, g in mine.groupby("drive")]),
            **{m: _row(mine, m, peer) for m in [peer, *models]},
        }
    return out


def _ci(c: list[float]) -> str:
    return f"[{c[0]:.3f}, {c[1]:.3f}]"


def markdown(protocol: str, res: dict, models: list[str]) -> str:
    """The tables docs/benchmarks.md quotes."""
    folds = list(res["pilotnet"]["per_fold"])
    head = ["predictor", "steering RMSE (95% CI)", "vs PilotNet (95% CI)", *folds]
    lines = [f"{protocol}: {res['frames']} held-out frames", "", "| " + " | ".join(head)]
    lines[-1] += " | throttle RMSE | train s | s to best |"
    lines.append("|" + " --- |" * (len(head) + 3))
    for m in [*models, "predict_zero"]:
        r = res[m]
        cells = [
            f"`{m}`",
            f"{r['steering']:.4f} {_ci(r['steering_ci95'])}",
            f"{r['vs_pilotnet']:.3f}x {_ci(r['vs_pilotnet_ci95'])}",
            *(f"{r['per_fold'][f]:.4f}" for f in folds),
            f"{r['throttle']:.4f}" if "throttle" in r else "–",
            f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–",
            f"{r['seconds_to_best']:.0f}" if r.get("seconds_to_best") else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    o = res["oracles"]
    lines.append(
        f"\nOracles on the same frames: previous true value {o['oracle_previous_true']:.4f}, "
        f"centred mean of 3 / 5 / 9 true values {o['oracle_centred_mean_3']:.4f} / "
        f"{o['oracle_centred_mean_5']:.4f} / {o['oracle_centred_mean_9']:.4f}; PilotNet "
        f"recalibrated on the test frames {o['pilotnet_recalibrated']:.4f}, plus the true angle "
        f"5–8 frames earlier {o['pilotnet_plus_true_angle_5_to_8_frames_earlier']:.4f}, plus "
        f"the true angle 1 frame earlier {o['pilotnet_plus_true_angle_1_frame_earlier']:.4f}."
    )
    for key in [k for k in res if k.startswith("vs_donkey")]:
        v, peer = res[key], key.removeprefix("vs_")
        lines.append(f"\nAgainst `{peer}` on its {v['frames']} frames ({', '.join(v['folds'])}):")
        for m in [peer, *models]:
            r = v[m]
            lines.append(
                f"- `{m}`: {r['steering']:.4f} {_ci(r['steering_ci95'])}, "
                f"{r['vs_' + peer]:.3f}x {_ci(r['vs_' + peer + '_ci95'])}"
                + (f", throttle {r['throttle']:.4f}" if "throttle" in r else "")
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--protocols", default="sessions,tub")
    ap.add_argument("--models", default="pilotnet,cnn_lstm")
    ap.add_argument("--epochs", type=int, default=0, help="default: EPOCHS per protocol")
    ap.add_argument("--jobs", type=int, default=2, help="models trained at once")
    a = ap.parse_args()
    models = a.models.split(",")
    if models[0] != "pilotnet":
        raise SystemExit("--models must start with pilotnet (the reference of every ratio)")
    results = {}
    for protocol in a.protocols.split(","):
        fold_res = [
            run_fold(
                f,
                a.work / protocol / f["name"],
                models,
                RECIPES[protocol],
                a.epochs or EPOCHS[protocol],
                a.jobs,
            )
            for f in folds(protocol, a.work)
        ]
        preds = pd.concat([r["preds"] for r in fold_res], ignore_index=True)
        peers = peer_predictions(a.work, protocol, preds)
        extra = {
            k: {m: sum(r[k][m] for r in fold_res) for m in models}
            for k in ("train_seconds", "seconds_to_best")
        }
        results[protocol] = table(preds, models, peers, extra)
        print(markdown(protocol, results[protocol], models), "\n", flush=True)
    write_json(a.work / "results.json", json.loads(json.dumps(results, default=float)))


if __name__ == "__main__":
    main()
