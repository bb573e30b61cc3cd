"""Would a mirrored twin at test time help? Each frame of a split is also run mirrored
through a second stream of the same run (its own state), and that stream's steering,
negated, is averaged with the plain one — a free second opinion for runs trained with
`data.flip=true`.

    python benchmarks/mirror_twin.py CACHE SPLIT RUN [RUN ...]

Prints the steering RMSE of the plain stream, the mirrored one, their average, and how
much their errors correlate (an average only helps errors that disagree).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from steertime.data import Cache
from steertime.models.checkpoint import load_model

CHUNK = 256


def stream(model, drive, start: int, stop: int, mirror: bool) -> np.ndarray:
    state, out = model.init_state(1, "cpu"), []
    for a in range(start, stop, CHUNK):
        f = drive.read_frames(a, min(a + CHUNK, stop))  # (T, H, W, 3)
        if mirror:
            f = np.ascontiguousarray(f[:, :, ::-1])
        with torch.no_grad():
            y, state = model(torch.from_numpy(f).unsqueeze(0), state)
        out.append(y[0].numpy())
    return np.concatenate(out)


def rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e**2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache", type=Path)
    ap.add_argument("split")
    ap.add_argument("runs", type=Path, nargs="+")
    a = ap.parse_args()
    cache = Cache.open(a.cache)
    for run in a.runs:
        model, meta = load_model(run)
        model.eval()
        layout, i = meta.layout, meta.layout.index("steering")
        plain, mirrored, true = [], [], []
        for seg in cache.segments(a.split):
            d = cache.drives[seg.drive]
            plain.append(layout.denormalize(stream(model, d, seg.start, seg.stop, False))[:, i])
            mirrored.append(-layout.denormalize(stream(model, d, seg.start, seg.stop, True))[:, i])
            true.append(d.signals["steering"][seg.start : seg.stop])
        p, m, t = map(np.concatenate, (plain, mirrored, true))
        ep, em = p - t, m - t
        print(
            f"{run}: plain {rms(ep):.4f}, mirrored {rms(em):.4f}, average {rms((ep + em) / 2):.4f}"
            f", error correlation {np.corrcoef(ep, em)[0, 1]:.2f}"
        )


if __name__ == "__main__":
    main()
