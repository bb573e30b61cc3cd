"""Spreads that recalibrate themselves online from the outcomes they predicted.

A run's spread is calibrated once, on validation (`train.spread`): on driving like the
validation minutes its 90% interval covers 90%. When the driving drifts — a driver who
varies the throttle more in later minutes, a car that wanders further from its speed — the
interval stays as narrow as validation taught it and covers less (docs/benchmarks.md:
throttle 70–78%, speed 65–73% on held-out minutes).

Where the truth arrives after the fact (the car's measured speed, the driver's command
while a human drives, the log during `evaluate`), each output's spread can be rescaled
as it goes — adaptive conformal inference (Gibbs & Candès, NeurIPS 2021), in its
multiplicative form: after each outcome

    scale <- scale * exp(gamma * (missed - (1 - level)))

so a miss widens the interval by ~gamma and a hit narrows it by gamma·(1 − level)/level
as much. Summed over T outcomes the misses minus their expected share equal
log(scale_T / scale_0) / gamma: whatever the drift, as long as the scale stays bounded the
interval's long-run coverage is `level`, within |log scale_T| / (gamma · T). It only uses
outcomes already seen, so it is causal; with `gamma` 0 it is the validation calibration.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import NormalDist

import numpy as np

DEFAULT_GAMMA = 0.05  # chosen on held-out minutes of the nested tub split (docs/benchmarks.md)
LEVEL = 0.9
# A few frames of a frozen log or a blackout must not drive the scale to 0 or infinity.
SCALE_BOUNDS = (1e-3, 1e3)


def z_of(level: float) -> float:
    """Half-width of the central `level` interval of a unit Gaussian."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


class AdaptiveScale:
    """One output's online spread scale. `update(pred, spread, truth)` after each outcome;
    `scale` multiplies the model's spread for the next prediction. `delay`: outcomes that
    arrive `delay` frames late (a run trained on the log `data.lead` frames later learns
    its target only then) are queued and applied when they do."""

    def __init__(self, gamma: float = DEFAULT_GAMMA, level: float = LEVEL, delay: int = 0):
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.gamma, self.level, self.delay = gamma, level, delay
        self.z = z_of(level)
        self.reset()

    def reset(self) -> None:
        self.scale = 1.0
        self._pending: deque[bool] = deque()

    def update(self, pred: float, spread: float, truth: float) -> bool:
        """Record one outcome of an interval given with the current scale applied
        (`spread` is the scaled one); returns whether it was missed."""
        missed = bool(abs(pred - truth) > self.z * spread)
        self._pending.append(missed)
        if len(self._pending) > self.delay:
            m = self._pending.popleft()
            self.scale *= math.exp(self.gamma * (m - (1.0 - self.level)))
            self.scale = min(max(self.scale, SCALE_BOUNDS[0]), SCALE_BOUNDS[1])
        return missed


def adaptive_scales(
    pred: np.ndarray,
    truth: np.ndarray,
    spread: np.ndarray,
    starts: np.ndarray | None = None,
    gamma: float = DEFAULT_GAMMA,
    level: float = LEVEL,
    delay: int = 0,
) -> np.ndarray:
    """(N,) the scale in force at each frame when the frames stream in order and each
    frame's truth is learnt `delay` frames after it; `starts`: (N,) bool, True where a new
    drive begins and the scale starts again from the validation calibration (1)."""
    n = len(pred)
    a = AdaptiveScale(gamma, level, delay)
    out = np.empty(n)
    for t in range(n):
        if starts is not None and starts[t]:
            a.reset()
        out[t] = a.scale
        a.update(float(pred[t]), float(spread[t] * a.scale), float(truth[t]))
    return out
