"""What a run learns to predict: each output's labels over the training split, and the
layout (normalisation, clip range, categorical bins) fitted on them — never on val or test."""

from __future__ import annotations

import dataclasses

import numpy as np

from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models import OutputLayout


def train_values(cache: Cache, outputs: list[str]) -> dict[str, np.ndarray]:
    """Each output's labels over the training split (never val or test)."""
    missing = [n for n in outputs if n not in cache.signal_names()]
    if missing:
        raise SteertimeError(
            f"outputs {missing} are not signals of every drive in {cache.path} "
            f"(available: {cache.signal_names()})"
        )
    segs = cache.segments("train")
    if not segs:
        raise SteertimeError(f"{cache.path}: the train split is empty")
    return {
        n: np.concatenate([cache.drives[s.drive].signals[n][s.start : s.stop] for s in segs])
        for n in outputs
    }


def fit_layout(
    cache: Cache,
    outputs: list[str],
    weights: list[float],
    clip: bool = True,
    labels: dict[str, np.ndarray] | None = None,
) -> OutputLayout:
    """Mean/std (and, with `clip`, min/max) of each output over the training split
    (`labels`: `train_values(cache, outputs)` when the caller has read them already)."""
    vals = labels if labels is not None else train_values(cache, outputs)
    units = [cache.drives[0].units[n].to_dict() for n in outputs]
    return OutputLayout(
        names=list(outputs),
        mean=[float(vals[n].mean()) for n in outputs],
        std=[max(float(vals[n].std()), 1e-6) for n in outputs],
        units=units,
        weights=list(weights) if weights else [1.0] * len(outputs),
        low=[float(vals[n].min()) for n in outputs] if clip else [],
        high=[float(vals[n].max()) for n in outputs] if clip else [],
    )


BALANCE_BINS, BALANCE_CAP = 21, 10.0


def balance_weights(
    layout: OutputLayout, values: np.ndarray, index: int, power: float
) -> tuple[np.ndarray, np.ndarray]:
    """`data.balance`: loss weights per bin of output `index` (normalised units) from its
    training labels `values` (physical). Returns the bins' inner edges (N-1,), for
    `torch.bucketize`, and their weights (N,): share^-power, capped at BALANCE_CAP times
    the commonest bin's, scaled so the training frames' mean weight is 1. A bin with no
    training frame (a distilled target can land there) gets the cap."""
    z = (np.asarray(values, np.float64) - layout.mean[index]) / layout.std[index]
    lo, hi = float(z.min()), float(z.max())
    edges = np.linspace(lo, max(hi, lo + 1e-3), BALANCE_BINS + 1)[1:-1]
    share = np.bincount(np.searchsorted(edges, z), minlength=BALANCE_BINS) / len(z)
    seen = share > 0
    w = np.full(BALANCE_BINS, np.inf)
    w[seen] = share[seen] ** -power
    w = np.minimum(w, BALANCE_CAP * w[seen].min())
    w /= (share * w).sum()
    return edges.astype(np.float32), w.astype(np.float32)


def binned(layout: OutputLayout, bins: int, model: dict) -> OutputLayout:
    """The layout of a categorical head: `bins` classes per output over its training
    range (normalised), checked against what the head cannot do."""
    if bins < 2:
        raise SteertimeError(f"train.bins must be 0 (regression) or >= 2, got {bins}")
    clash = [
        f
        for f, on in (
            ("train.spread", layout.spread),
            ("model.hold_on_missing", model.get("hold_on_missing")),
        )
        if on
    ]
    if clash:
        raise SteertimeError(
            f"train.bins={bins}: a categorical head cannot be combined with {clash[0]} "
            "(it holds or spreads one value per output, not N logits)"
        )
    if not layout.clips:
        raise SteertimeError(
            "train.bins needs the outputs' training range: keep data.clip_outputs=true"
        )
    mean, std = np.asarray(layout.mean), np.asarray(layout.std)
    low = (np.asarray(layout.low) - mean) / std
    high = (np.asarray(layout.high) - mean) / std
    # a constant output (high == low) still needs an ordered range to spread its bins over
    high = np.maximum(high, low + 1e-3)
    return dataclasses.replace(layout, bins=bins, bin_low=low.tolist(), bin_high=high.tolist())
