"""Metrics that say how well a model steers, including what RMSE hides.

All functions take 1-D arrays of per-frame values (one drive or several concatenated)
and are pure numpy, so they are easy to check by hand.
"""

from __future__ import annotations

import numpy as np

from steertime.stream.adaptive import z_of


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def interval_coverage(pred: np.ndarray, true: np.ndarray, sd: np.ndarray, level: float) -> float:
    """Share of frames whose truth lies in the central `level` interval of a Gaussian
    N(pred, sd): `level` itself when the spread is honest."""
    return float(np.mean(np.abs(pred - true) <= z_of(level) * sd))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true)))


def r2(pred: np.ndarray, true: np.ndarray) -> float:
    """1 - SSE/SST: 0 for predicting the mean, 1 for perfect; can be negative."""
    sst = float(np.sum((true - true.mean()) ** 2))
    return float("nan") if sst == 0 else 1.0 - float(np.sum((pred - true) ** 2)) / sst


def best_lag(pred: np.ndarray, true: np.ndarray, max_lag: int) -> int:
    """The shift (frames) that best aligns prediction with truth, by least squares.

    Positive: the prediction lags behind the truth (pred[t] ≈ true[t - lag]).
    """
    n = len(pred)
    max_lag = min(max_lag, n // 2)
    best, best_err = 0, np.inf
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = pred[lag:], true[: n - lag]
        else:
            a, b = pred[: n + lag], true[-lag:]
        err = float(np.mean((a - b) ** 2))
        if err < best_err - 1e-15:
            best, best_err = lag, err
    return best


def mean_abs_rate(x: np.ndarray, t: np.ndarray) -> float:
    """Mean |dx/dt|: how fast the signal moves (steering smoothness)."""
    if len(x) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(x) / np.diff(t))))


BUCKETS = (("straight", 0.0, 0.25), ("gentle", 0.25, 1.0), ("sharp", 1.0, np.inf))


def error_by_magnitude(pred: np.ndarray, true: np.ndarray, scale: float) -> dict[str, dict]:
    """RMSE in buckets of |true| / scale (scale: e.g. the training std of steering)."""
    mag = np.abs(true) / max(scale, 1e-12)
    out = {}
    for name, lo, hi in BUCKETS:
        m = (mag >= lo) & (mag < hi)
        out[name] = {
            "range": f"[{lo:g}, {hi:g})·std",
            "frames": int(m.sum()),
            "rmse": rmse(pred[m], true[m]) if m.any() else float("nan"),
        }
    return out


BLOCK_S = 2.0  # bootstrap block length: longer than the error's correlation time
# Fewer blocks than this give no interval: resampling 1–9 blocks of the same few seconds
# yields a spread that says nothing (with one block, an interval of width 0).
MIN_BLOCKS = 10


def _block_sums(
    values: np.ndarray, block: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sums and lengths of consecutive blocks; a run's last block may be partial, so every
    frame counts. A new block starts wherever `groups` (e.g. the drive) changes, so no
    block joins the end of one recording to the start of another."""
    n = len(values)
    runs = [0] if groups is None else np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = [*runs[1:], n]
    starts = np.concatenate([np.arange(a, b, block) for a, b in zip(runs, ends, strict=True)])
    return np.add.reduceat(values, starts), np.diff(np.append(starts, n))


def block_bootstrap_rmse(
    err: np.ndarray,
    block: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Confidence interval of RMSE by resampling contiguous blocks of frames.

    Errors of neighbouring frames are correlated; resampling single frames would make the
    interval far too narrow. `err` may be a difference of squared errors' inputs: pass
    the per-frame errors (pred - true). Blocks never cross a change of `groups` (the
    drive). (nan, nan) under `MIN_BLOCKS` blocks' worth of frames.
    """
    if len(err) < MIN_BLOCKS * block:
        return float("nan"), float("nan")
    sums, lens = _block_sums(err**2, block, groups)
    picks = np.random.default_rng(seed).integers(0, len(sums), (n_boot, len(sums)))
    boot = np.sqrt(sums[picks].sum(axis=1) / lens[picks].sum(axis=1))
    a = (1 - level) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def _paired_sums(
    err_a: np.ndarray,
    err_b: np.ndarray,
    block: int,
    n_boot: int,
    seed: int,
    groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_boot,) resampled sums of squared errors of a and of b over the same blocks,
    and their frame counts: the blocks are drawn jointly, so the pairing is kept."""
    sa, lens = _block_sums(err_a**2, block, groups)
    sb, _ = _block_sums(err_b**2, block, groups)
    picks = np.random.default_rng(seed).integers(0, len(sa), (n_boot, len(sa)))
    return sa[picks].sum(1), sb[picks].sum(1), lens[picks].sum(1)


def block_bootstrap_diff(
    err_a: np.ndarray,
    err_b: np.ndarray,
    block: int,
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """95% CI of RMSE(a) - RMSE(b) on the same frames, blocks resampled jointly (never
    across a change of `groups`); (nan, nan) under `MIN_BLOCKS` blocks' worth of frames."""
    if len(err_a) < MIN_BLOCKS * block:
        return float("nan"), float("nan")
    a, b, n = _paired_sums(err_a, err_b, block, n_boot, seed, groups)
    d = np.sqrt(a / n) - np.sqrt(b / n)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def block_bootstrap_ratio(
    err_a: np.ndarray,
    err_b: np.ndarray,
    block: int,
    n_boot: int = 2000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """95% CI of RMSE(a) / RMSE(b) on the same frames, blocks resampled jointly.

    `groups` (e.g. the held-out session of each frame) keeps every block inside one
    group, so no block joins the end of one recording to the start of another; every
    frame counts, as in `block_bootstrap_rmse`. (nan, nan) under `MIN_BLOCKS` blocks'
    worth of frames."""
    if len(err_a) < MIN_BLOCKS * block:
        return float("nan"), float("nan")
    a, b, _ = _paired_sums(err_a, err_b, block, n_boot, seed, groups)
    r = np.sqrt(a / np.maximum(b, 1e-300))
    return float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))
