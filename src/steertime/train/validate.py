"""Streaming evaluation of a model over cache segments, state carried as in the car."""

from __future__ import annotations

import numpy as np
import torch

from steertime.data import Cache, Segment
from steertime.models import OutputLayout, SequenceModel
from steertime.train.batches import lead_rows


@torch.no_grad()
def predict_segment(
    model: SequenceModel,
    cache: Cache,
    seg: Segment,
    device: torch.device,
    chunk: int = 256,
    features=None,
) -> np.ndarray:
    """Normalised predictions (T, K) for one segment, starting from a fresh state.

    With a features store, the encoder's cached outputs replace running the encoder."""
    d = cache.drives[seg.drive]
    state = model.init_state(1, device)
    out = []
    for a in range(seg.start, seg.stop, chunk):
        b = min(a + chunk, seg.stop)
        if features is None:
            x = torch.from_numpy(d.read_frames(a, b)).unsqueeze(0).to(device)
            y, state = model(x, state)
        else:
            f = torch.from_numpy(features.read(seg.drive, a, b)).unsqueeze(0).to(device)
            y, state = model.core(model.encode_features(f), state)
        out.append(y[0].float().cpu().numpy())
    return np.concatenate(out)


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
