"""Does the car's own turning, measured from the frames, add anything to a trained model?

    python benchmarks/ego_motion.py --work W [--runs cnn_lstm,cnn_lstm_s1] [--lags 0,1,2,3]

W is a `bench_sessions.py --protocols tubval` work folder. For each nested fold the
horizontal image shift between consecutive held-out frames is measured by phase
correlation (top 40 rows — the far view, where a turn moves the image most uniformly —
and the whole frame): how fast the picture turns, i.e. the yaw rate the steering of a
few frames earlier caused. The script prints how that shift correlates with the steering
k frames earlier, then stacks it onto the named runs' averaged prediction by least
squares — fitted on two folds, scored on the third — to ask whether a model given that
signal explicitly could steer better than one that must read it from its features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench_sessions import TUBVAL  # the nested folds, named as that script names them
from steertime.data import Cache

FOLDS = {f"{k}_{a}-{b - 1}": k for k, (_, (a, b)) in TUBVAL.items()}  # folder -> view letter


def image_shift(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) horizontal shift in pixels from frame t-1 to t (0 at t=0):
    the peak of the phase correlation, refined to sub-pixel by a parabola."""
    g = frames.astype(np.float32).mean(-1)
    g -= g.mean((1, 2), keepdims=True)
    window = np.hanning(g.shape[1])[:, None] * np.hanning(g.shape[2])[None]
    spectra = np.fft.fft2(g * window)
    out = np.zeros(len(g), np.float32)
    h, w = g.shape[1:]
    for i in range(1, len(g)):
        cross = spectra[i] * np.conj(spectra[i - 1])
        r = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
        y, x = np.unravel_index(np.argmax(r), r.shape)
        left, mid, right = r[y, (x - 1) % w], r[y, x], r[y, (x + 1) % w]
        den = left - 2 * mid + right
        out[i] = (x - w if x > w // 2 else x) + (0.5 * (left - right) / den if den else 0.0)
    return out


def fold_table(fold: Path, runs: list[str]) -> pd.DataFrame:
    """Per held-out frame: truth, the runs' averaged steering (clipped to ±1, as the car
    would) and the two shifts; drives concatenated in the order `evaluate` writes them."""
    cache = Cache.open(fold / "cache_test")
    top, full = [], []
    for d in cache.drives:
        frames = d.read_frames(0, d.n)
        top.append(image_shift(frames[:, :40]))
        full.append(image_shift(frames))
    p = pd.read_parquet(fold / "predictions_all.parquet")
    pred = np.mean([p[f"{r}:steering"].to_numpy() for r in runs], axis=0)
    return pd.DataFrame(
        {
            "truth": p["true_steering"].to_numpy(),
            "pred": np.clip(pred, -1, 1),
            "dx_top": np.concatenate(top),
            "dx_full": np.concatenate(full),
        }
    )


def lagged(t: pd.DataFrame, col: str, lags: list[int]) -> np.ndarray:
    cols = [t["pred"].to_numpy(), np.ones(len(t))]
    for k in lags:  # the shift k frames before; zero before the first frame
        z = np.roll(t[col].to_numpy(), k)
        z[:k] = 0
        cols.append(z)
    return np.column_stack(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--runs", default="cnn_lstm,cnn_lstm_s1")
    ap.add_argument("--lags", default="0,1,2,3")
    a = ap.parse_args()
    runs, lags = a.runs.split(","), [int(k) for k in a.lags.split(",")]
    tables = {f: fold_table(a.work / "tubval" / f, runs) for f in FOLDS}
    for f, t in tables.items():
        s = t["truth"].to_numpy()
        for col in ("dx_top", "dx_full"):
            x = t[col].to_numpy()
            corr = [np.corrcoef(x[k:], s[: len(s) - k])[0, 1] for k in range(10)]
            print(f"{f} {col}: corr(shift_t, steering_t-k), k=0..9:", *(f"{c:+.2f}" for c in corr))
    for col in ("dx_top", "dx_full"):
        base = stacked = 0.0
        n = 0
        for f, t in tables.items():
            train = [tables[g] for g in tables if g != f]
            coef = np.linalg.lstsq(
                np.vstack([lagged(g, col, lags) for g in train]),
                np.concatenate([g["truth"].to_numpy() for g in train]),
                rcond=None,
            )[0]
            y = t["truth"].to_numpy()
            base += float(((t["pred"].to_numpy() - y) ** 2).sum())
            stacked += float(((np.clip(lagged(t, col, lags) @ coef, -1, 1) - y) ** 2).sum())
            n += len(y)
        print(
            f"{col}, lags {lags}: runs averaged {np.sqrt(base / n):.4f}, with the shift "
            f"(fitted on the other folds) {np.sqrt(stacked / n):.4f} = "
            f"{np.sqrt(stacked / base):.3f}x, {n} frames"
        )


if __name__ == "__main__":
    main()
