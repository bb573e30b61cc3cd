"""Does a recording's image motion carry its speed? Hand-made motion cues vs the truth.

    python benchmarks/speed_cue.py [--data ../shared/data/udacity_sim_track1] [--frames 1500]

For consecutive frames (full source size, grey): the mean absolute difference, and the
vertical shift (0-19 rows) that best aligns three horizontal bands of road below the
horizon — the road texture slides down the image at a rate set by speed. Each cue is
correlated with the logged speed, raw and divided by the frame interval. If none of them
correlates, a network that must learn speed from motion has little to learn from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steertime.data import read_drives

ROOT = Path(__file__).resolve().parents[1]
BANDS = ((70, 90), (90, 110), (110, 135))  # rows of a 160-row frame, top to bottom
MAX_SHIFT = 20


def best_shift(prev: np.ndarray, cur: np.ndarray, band: tuple[int, int]) -> int:
    y0, y1 = band
    w0, w1 = prev.shape[1] // 8, prev.shape[1] * 7 // 8
    errs = [
        np.abs(cur[y0 + s : y1 + s, w0:w1] - prev[y0:y1, w0:w1]).mean() for s in range(MAX_SHIFT)
    ]
    return int(np.argmin(errs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/udacity_sim_track1")
    ap.add_argument("--frames", type=int, default=1500)
    a = ap.parse_args()
    drive = read_drives(a.data)[0]
    n = min(a.frames, len(drive))
    grey = [
        f.astype(np.float32).mean(-1) for _, f in drive.frames.subset(np.arange(n)).iter_frames()
    ]
    scale = grey[0].shape[0] / 160
    bands = [(round(y0 * scale), round(y1 * scale)) for y0, y1 in BANDS]
    speed = np.asarray(drive.signals["speed"][1:n], float)
    dt = np.diff(np.asarray(drive.timestamps[:n], float))
    cues = {"mean_abs_diff": [np.abs(b - p).mean() for p, b in zip(grey, grey[1:], strict=False)]}
    for k, band in enumerate(bands):
        cues[f"shift_band{k}"] = [
            best_shift(p, b, band) for p, b in zip(grey, grey[1:], strict=False)
        ]
    out = {
        "frames": n,
        "interval_ms_p5_p50_p95": [
            round(float(x) * 1000, 1) for x in np.percentile(dt, [5, 50, 95])
        ],
    }
    for name, c in cues.items():
        c = np.asarray(c, float)
        out[name] = {
            "corr_with_speed": round(float(np.corrcoef(c, speed)[0, 1]), 3),
            "corr_per_second_with_speed": round(float(np.corrcoef(c / dt, speed)[0, 1]), 3),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
