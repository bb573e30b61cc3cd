"""Do models copy the action the car is executing instead of the expert's? (simulator data)

    python benchmarks/copycat.py --cache /tmp/cl15/cache /tmp/cl15/runs/pilotnet_e30_s0 \
        /tmp/cl15/runs/cnn_lstm_e30_s0 [--splits val,test]

A model that sees history can infer the steering the car *is executing* from the motion
of the last frames, and most of the time that equals the expert's label: copying it gives
a low offline error but no correction in the loop (the "copycat" problem of Wen et al.,
Fighting Copycat Agents in Behavioral Cloning from Observation Histories, NeurIPS 2020).
`simulate` records both: `steering` is the expert's command, `wheel_measured` the wheel
the car had, which differs from it while a perturbation pushes the car off-centre. So

    copy slope = regression slope of (prediction − label) on (wheel_measured − label)

is 0 for a model that predicts the expert's correction whatever the car does, 1 for one
that echoes the executed wheel; negative when the model corrects *before* the expert,
whose command comes 0.2 s after what it reacts to. `best_lead_frames` says the same in
time: the k at which the prediction best matches the label k frames later (k > 0: the
model is ahead of the expert). Reported with RMSE on calm frames and on perturbed frames
(|wheel_measured − label| > --threshold degrees), and for the pure echo itself.

The same question for the speed command: `--label target_speed --executed speed
--threshold 1` (m/s) — does the model ask for the speed the car has (Codevilla et al.'s
inertia problem), or the speed the road ahead wants?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from steertime.data import Cache
from steertime.evaluate.metrics import rmse
from steertime.models.checkpoint import load_model
from steertime.stream.segments import predict_segment


def _rmse(err: np.ndarray) -> float:
    return rmse(err, np.zeros_like(err)) if len(err) else float("nan")


def best_lead(preds: list[np.ndarray], labels: list[np.ndarray], leads=range(-3, 6)) -> int:
    """The k minimising RMSE(pred[t], label[t + k]) over all segments."""

    def rmse_at(k: int) -> float:
        sq = [
            (p[max(0, -k) : len(p) - max(0, k)] - y[max(0, k) : len(y) - max(0, -k)]) ** 2
            for p, y in zip(preds, labels, strict=True)
        ]
        return float(np.sqrt(np.mean(np.concatenate(sq))))

    return min(leads, key=rmse_at)


def copy_stats(pred: np.ndarray, label: np.ndarray, executed: np.ndarray, thr: float) -> dict:
    dev, err = executed - label, pred - label
    slope = float(np.dot(dev - dev.mean(), err - err.mean()) / np.sum((dev - dev.mean()) ** 2))
    pert = np.abs(dev) > thr
    return {
        "copy_slope": slope,
        "rmse_all": _rmse(err),
        "rmse_calm": _rmse(err[~pert]),
        "rmse_perturbed": _rmse(err[pert]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--label", default="steering", help="the expert's command")
    ap.add_argument("--executed", default="wheel_measured", help="what the car is doing")
    ap.add_argument("--threshold", type=float, default=5.0, help="in the label's unit")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cache = Cache.open(a.cache)
    segs = [s for split in a.splits.split(",") for s in cache.segments(split)]
    labels = [cache.drives[s.drive].signals[a.label][s.start : s.stop] for s in segs]
    label = np.concatenate(labels)
    executed = np.concatenate(
        [cache.drives[s.drive].signals[a.executed][s.start : s.stop] for s in segs]
    )
    pert = np.abs(executed - label) > a.threshold
    result: dict = {
        "frames": int(len(label)),
        "perturbed_frames": int(pert.sum()),
        f"echo of {a.executed}": copy_stats(executed, label, executed, a.threshold),
    }
    for run in a.runs:
        model, meta = load_model(run)
        layout = meta.layout
        k = layout.index(a.label)
        with torch.no_grad():
            preds = [
                layout.denormalize(predict_segment(model, cache, s, torch.device("cpu")))[:, k]
                for s in segs
            ]
        result[run.name] = {
            **copy_stats(np.concatenate(preds), label, executed, a.threshold),
            "best_lead_frames": best_lead(preds, labels),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        from steertime.atomic import write_text

        write_text(a.out, text + "\n")


if __name__ == "__main__":
    main()
