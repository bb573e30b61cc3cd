"""How much does a trained run's steering answer a horizontally moved frame? Every frame
of a split is moved by dx pixels (edges repeated, as `data.shift` moves training frames)
and streamed through the run; the mean change of the steering, per pixel, is the gain a
run has learnt from its log — a data-driven value for `data.shift_steer`.

    python benchmarks/shift_response.py CACHE SPLIT RUN [RUN ...] [--dx 2,4,8]

Prints, per run, the mean steering change at each +-dx and its slope per pixel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from steertime.data import Cache
from steertime.models.checkpoint import load_model
from steertime.train.batches import shifted

CHUNK = 256


def stream(model, layout, drive, start: int, stop: int, dx: int) -> np.ndarray:
    """Steering (native units) of `model` over frames [start, stop) moved dx pixels right."""
    state, out = model.init_state(1, "cpu"), []
    k = layout.names.index("steering")
    for a in range(start, stop, CHUNK):
        f = shifted(drive.read_frames(a, min(a + CHUNK, stop)), 0, dx)  # (T, H, W, 3)
        with torch.no_grad():
            y, state = model(torch.from_numpy(np.ascontiguousarray(f)).unsqueeze(0), state)
        out.append(layout.denormalize(y[0].float().numpy())[:, k])
    return np.concatenate(out)


def response(run: Path, cache: Cache, split: str, dxs: list[int]) -> dict[int, float]:
    """Mean steering change for each dx in `dxs` (and its negative) against dx = 0."""
    model, meta = load_model(run)
    model.eval()
    segs = cache.segments(None if split == "all" else split)
    if not segs:
        raise SystemExit(f"{cache.path}: split {split!r} is empty (train, val, test or all)")
    moved = {}
    for dx in sorted({0, *dxs, *(-d for d in dxs)}):
        moved[dx] = np.concatenate(
            [stream(model, meta.layout, cache.drives[s.drive], s.start, s.stop, dx) for s in segs]
        )
    return {dx: float(np.mean(moved[dx] - moved[0])) for dx in moved if dx}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("split")
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--dx", default="2,4,8", help="pixel moves to try, each also negated")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cache = Cache.open(a.cache)
    dxs = [int(v) for v in a.dx.split(",")]
    for run in a.runs:
        r = response(run, cache, a.split, dxs)
        slope = sum(dx * v for dx, v in r.items()) / sum(dx * dx for dx in r)  # through 0
        cells = "  ".join(f"{dx:+d}px {v:+.4f}" for dx, v in r.items())
        print(f"{run.name}: {cells}  -> {slope:+.5f} steering per pixel right")


if __name__ == "__main__":
    main()
