"""A model streaming over a cache segment from a fresh state, as it would in the car.

Training's validation and `steertime evaluate` both score this, so they agree frame for
frame.

With fault codes (`steertime.data.faults`), the frames are faulted as the training
augmentation faults them: blanking frames reach a `missing_input` model as the missing
flag, and any other model holds its last output through them, as the predictor does.
"""

from __future__ import annotations

import numpy as np
import torch

from steertime.data import Cache, Segment
from steertime.data.faults import apply_offline, event_starts
from steertime.models import SequenceModel


@torch.no_grad()
def predict_segment(
    model: SequenceModel,
    cache: Cache,
    seg: Segment,
    device: torch.device,
    chunk: int = 256,
    features=None,
    faults: np.ndarray | None = None,
    fault_seed: int = 0,
) -> np.ndarray:
    """Normalised predictions (T, K) for one segment, starting from a fresh state.

    With a features store, the encoder's cached outputs replace running the encoder.
    `faults`: (T,) fault codes of the segment's frames (no features store then)."""
    d = cache.drives[seg.drive]
    state = model.init_state(1, device)
    out = []
    starts = event_starts(faults) if faults is not None else None
    for a in range(seg.start, seg.stop, chunk):
        b = min(a + chunk, seg.stop)
        if faults is not None:
            sl = slice(a - seg.start, b - seg.start)
            frames, missing = apply_offline(d.read_frames(a, b), faults[sl], starts[sl], fault_seed)
            x = torch.from_numpy(frames).unsqueeze(0).to(device)
            flag = torch.from_numpy(missing)[None].to(device) if model.missing_input else None
            y, state = model(x, state, flag)
            if not model.missing_input:  # no memory: hold the last output through the fault
                y = _hold(y, missing, out)
        elif features is None:
            x = torch.from_numpy(d.read_frames(a, b)).unsqueeze(0).to(device)
            y, state = model(x, state)
        else:
            f = torch.from_numpy(features.read(seg.drive, a, b)).unsqueeze(0).to(device)
            y, state = model.core(model.encode_features(f), state)
        out.append(y[0].float().cpu().numpy())
    return np.concatenate(out)


def _hold(y: torch.Tensor, missing: np.ndarray, before: list[np.ndarray]) -> torch.Tensor:
    """(1, T, K) outputs with each missing frame's replaced by the last good one's (the
    previous chunks' last output first; the training mean, 0, before any)."""
    y = y.clone()
    last = torch.from_numpy(before[-1][-1]) if before else torch.zeros(y.shape[-1])
    for t in range(y.shape[1]):
        if missing[t]:
            y[0, t] = last
        else:
            last = y[0, t]
    return y
