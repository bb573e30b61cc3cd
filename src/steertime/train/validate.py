"""Validation during training: the model streaming over whole val segments (state carried
as in the car, `steertime.stream.segments`) scored against the targets it trains on."""

from __future__ import annotations

import numpy as np

from steertime.data import Cache, Segment
from steertime.data.lead import lead_rows
from steertime.models import OutputLayout, SequenceModel
from steertime.stream.segments import predict_segment


def stream_metrics(
    model: SequenceModel,
    cache: Cache,
    segments: list[Segment],
    layout: OutputLayout,
    device,
    features=None,
    lead: int = 0,
) -> dict[str, float]:
    """RMSE per output in native units against the targets the model trains on (the log
    `lead` frames later; see train/batches.py)."""
    was_training = model.training
    model.eval()
    preds, truth = [], []
    for seg in segments:
        preds.append(
            layout.denormalize(predict_segment(model, cache, seg, device, features=features))
        )
        d = cache.drives[seg.drive]
        rows = lead_rows(seg.start, seg.stop, lead, d.n)
        truth.append(np.stack([d.signals[n][rows] for n in layout.names], -1))
    model.train(was_training)
    p, t = np.concatenate(preds), np.concatenate(truth)
    out = {}
    for name, err in layout.parse(p - t).items():
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(err**2)))
    return out
