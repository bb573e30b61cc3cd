"""Validation during training: the model streaming over whole val segments (state carried
as in the car, `steertime.stream.segments`) scored against the targets it trains on."""

from __future__ import annotations

import dataclasses

import numpy as np

from steertime.data import Cache, Segment
from steertime.data.lead import lead_rows
from steertime.models import OutputLayout, SequenceModel
from steertime.models.layout import Z90
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
    preds, truth, spreads = [], [], []
    raw_layout = dataclasses.replace(layout, spread_scale=[])  # the head's own spread
    for seg in segments:
        y = predict_segment(model, cache, seg, device, features=features)
        preds.append(layout.denormalize(y))
        if layout.spread:
            spreads.append(raw_layout.spread_of(y))
        d = cache.drives[seg.drive]
        rows = lead_rows(seg.start, seg.stop, lead, d.n)
        truth.append(np.stack([d.signals[n][rows] for n in layout.names], -1))
    model.train(was_training)
    p, t = np.concatenate(preds), np.concatenate(truth)
    out = {}
    for name, err in layout.parse(p - t).items():
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(err**2)))
    if spreads:
        # How many of the head's own spreads the 90% of errors need: the calibration
        # (`spread_scale` = z90 / 1.645) that makes mean ± 1.645 spread cover 90% of frames.
        z = np.abs(p - t) / np.maximum(np.concatenate(spreads), 1e-12)
        for i, name in enumerate(layout.names):
            out[f"z90_{name}"] = float(np.quantile(z[:, i], 0.9))
    return out


def calibrated(layout: OutputLayout, metrics: dict[str, float]) -> OutputLayout:
    """The layout with `spread_scale` fitted on validation (unchanged without a spread)."""
    if not layout.spread or not all(f"z90_{n}" in metrics for n in layout.names):
        return layout
    scale = [max(metrics[f"z90_{n}"], 1e-6) / Z90 for n in layout.names]
    return dataclasses.replace(layout, spread_scale=scale)
