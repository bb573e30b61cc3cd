"""A model streaming over a cache segment from a fresh state, as it would in the car.

Training's validation and `steertime evaluate` both score this, so they agree frame for
frame.
"""

from __future__ import annotations

import numpy as np
import torch

from steertime.data import Cache, Segment
from steertime.models import SequenceModel


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
