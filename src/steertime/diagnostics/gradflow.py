"""‖∂loss(T)/∂h_t‖ for every step t back through a sequence of real frames.

The loss is taken at the last step only; how fast its gradient fades going back in time
is how far back the network can learn to look. The effective memory horizon is the
number of steps until it falls below `threshold` (1e-3) of its value at T.

A core without a hidden vector (`model.rnn=tcn` or `attn`: its state is its last inputs)
is traced through the features each frame feeds it, ‖∂loss(T)/∂x_t‖: exactly zero past
its window.
"""

from __future__ import annotations

import numpy as np
import torch

from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models import SequenceModel


def memory_horizon(norms: np.ndarray, threshold: float = 1e-3) -> int:
    """Steps back from T until the gradient norm drops below threshold × its value at T."""
    ref = norms[-1]
    below = np.flatnonzero(norms[::-1] < threshold * ref)
    return int(below[0]) if len(below) else len(norms)


def gradient_through_time(
    model: SequenceModel, cache: Cache, length: int = 50, n_seq: int = 8, seed: int = 0
) -> np.ndarray:
    """Mean over `n_seq` random real sequences of ‖∂y_T/∂h_t‖ (‖∂y_T/∂x_t‖ for a core
    without a hidden vector), t = 0..length-1."""
    fresh = model.init_state(1)
    hidden = "h" in fresh
    if not fresh:
        raise SteertimeError(
            f"{model.model_name} keeps no state from frame to frame: there is no memory to trace"
        )
    rng = np.random.default_rng(seed)
    segs = [s for s in cache.segments() if len(s) > length]
    if not segs:
        raise ValueError(f"no segment in {cache.path} is longer than {length} frames")
    model.eval()
    out = np.zeros(length)
    for _ in range(n_seq):
        seg = segs[rng.integers(len(segs))]
        a = int(rng.integers(seg.start, seg.stop - length))
        x = torch.from_numpy(cache.drives[seg.drive].read_frames(a, a + length))[None]
        with torch.no_grad():
            feats, state = model.encode(x, model.init_state(1))  # (1, T, F)
        if not hidden:  # a fixed window: how far back the frames' features reach y_T
            f = feats.detach().requires_grad_()
            y, _ = model.core(f, state)
            y[0, -1].sum().backward()
            out += f.grad[0].norm(dim=-1).numpy()
            continue
        hs = []
        for t in range(length):  # one step at a time so every h_t is a node of the graph
            h = state["h"].detach().requires_grad_() if t == 0 else state["h"]
            h.retain_grad()
            hs.append(h)  # the hidden state entering step t
            y, state = model.core(feats[:, t : t + 1], {**state, "h": h})
        y[0, -1].sum().backward()  # the outputs at the last step
        out += np.array([float(h.grad.norm()) for h in hs])
    return out / n_seq
