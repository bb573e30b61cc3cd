"""How much of a steering label can any model predict? Floors from the truth alone.

    python benchmarks/label_noise.py --work /tmp/acc [--output steering]

Reads the caches that `bench_accuracy.py --work DIR` prepared and, over each test block
(segment by segment, never across a boundary), reports what *oracles that see the true
labels* score: repeating the previous true value, and a centred moving average of the
truth over 3/5/9 frames. When even those are close to a goal, the goal asks a model to
predict the driver's jitter, not the road. Also: the label's std, and the share of
frames at full lock or near zero (a bang-bang driver's signature).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steertime.data import Cache


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def floors(segments: list[np.ndarray]) -> dict:
    y = np.concatenate(segments)
    full = np.abs(y).max()
    out = {
        "frames": int(y.size),
        "std": float(y.std()),
        "share_at_full_lock": float(np.mean(np.abs(y) >= 0.95 * full)),
        "share_near_zero": float(np.mean(np.abs(y) <= 0.05 * full)),
        "oracle_previous_true": _rmse(
            np.concatenate([s[1:] for s in segments]), np.concatenate([s[:-1] for s in segments])
        ),
    }
    for w in (3, 5, 9):
        h = w // 2
        # 'valid' keeps only windows wholly inside a segment: no edge effects
        sm = [np.convolve(s, np.ones(w) / w, mode="valid") for s in segments if s.size >= w]
        tr = [s[h : s.size - h] for s in segments if s.size >= w]
        out[f"oracle_centred_mean_{w}"] = _rmse(np.concatenate(sm), np.concatenate(tr))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--output", default="steering")
    a = ap.parse_args()
    report = {}
    for cache_dir in sorted(a.work.glob("cache_*")):
        name = cache_dir.name.removeprefix("cache_")
        cache = Cache.open(cache_dir)
        segs = [
            np.asarray(cache.drives[s.drive].signals[a.output][s.start : s.stop], float)
            for s in cache.segments("test")
        ]
        report[name] = floors(segs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
