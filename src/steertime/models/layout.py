"""The output layout of a model: which signals, in which order, and their normalisation.

Named once and parsed in one place — training, evaluation, the streaming predictor and
export all go through `OutputLayout`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

# exp(±7) in normalised units: far beyond any label; keeps a diverging head finite.
LOG_SPREAD_BOUND = 7.0
# mean ± Z90 · spread is the central 90% of a Gaussian: what `spread_scale` is calibrated
# for (train/validate.py) and what `evaluate` checks on held-out frames.
Z90 = 1.6448536269514722


@dataclass
class OutputLayout:
    names: list[str]
    mean: list[float]
    std: list[float]
    units: list[dict] = field(default_factory=list)  # steertime.data.units.Unit dicts
    weights: list[float] = field(default_factory=list)  # loss weight per output
    # The range each output took over the training labels: physical outputs are clipped to
    # it, as the car's actuators clip a command. Empty (runs before the ninth session, or
    # `train.clip_outputs=false`): no clipping.
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    # `train.spread`: the model also predicts a spread per output — K more columns, each a
    # log standard deviation in normalised units (Gaussian NLL) — scaled by `spread_scale`,
    # calibrated on validation so that mean ± 1.645 spread covers 90% of the frames.
    spread: bool = False
    spread_scale: list[float] = field(default_factory=list)
    # `train.bins` = N: each output is N logits over evenly spaced values from `bin_low` to
    # `bin_high` (normalised units; its training range), a class per value as in
    # Donkeycar's `categorical`; the output is the softmax expectation, not the argmax, so
    # a torn choice between "straight" and "full lock" costs what it costs in RMSE.
    bins: int = 0
    bin_low: list[float] = field(default_factory=list)
    bin_high: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.names)
        if not self.weights:
            self.weights = [1.0] * k
        if not (len(self.mean) == len(self.std) == len(self.weights) == k):
            raise ValueError("layout fields must all have one entry per output")
        if len(self.low) != len(self.high) or (self.low and len(self.low) != k):
            raise ValueError("layout low/high must be empty or have one entry per output")
        if not all(
            math.isfinite(lo) and math.isfinite(hi) and lo <= hi
            for lo, hi in zip(self.low, self.high, strict=True)
        ):
            raise ValueError(f"layout range low {self.low} / high {self.high} is not ordered")
        if self.bins and (
            self.bins < 2
            or self.spread
            or not (len(self.bin_low) == len(self.bin_high) == k)
            or not all(lo < hi for lo, hi in zip(self.bin_low, self.bin_high, strict=True))
        ):
            raise ValueError(
                f"layout bins={self.bins} needs >= 2 bins, no spread and an ordered "
                f"bin_low/bin_high per output (got {self.bin_low} / {self.bin_high})"
            )

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def n_model_outputs(self) -> int:
        """Columns the model emits: K means, K log-spreads with `spread`, or N logits per
        output with `bins`."""
        if self.bins:
            return self.k * self.bins
        return 2 * self.k if self.spread else self.k

    def bin_centers(self) -> np.ndarray:
        """(K, N) the value each output's bins stand for, in normalised units."""
        return np.linspace(self.bin_low, self.bin_high, self.bins, axis=-1)

    def means(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The K normalised means of the model's columns (all of them without `spread` or
        `bins`; with `bins`, the softmax expectation of each output's logits)."""
        if self.bins:
            return expectation(y, self.bin_centers())
        return y[..., : self.k] if y.shape[-1] == 2 * self.k and self.spread else y

    def spread_of(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(..., 2K) model columns -> (..., K) standard deviations in physical units."""
        k = self.k
        scale = self.spread_scale or [1.0] * k
        if isinstance(y, torch.Tensor):
            factor = torch.tensor(self.std, dtype=y.dtype) * torch.tensor(scale, dtype=y.dtype)
            return torch.exp(y[..., k:].clamp(-LOG_SPREAD_BOUND, LOG_SPREAD_BOUND)) * factor
        factor = np.asarray(self.std) * np.asarray(scale)
        return np.exp(np.clip(y[..., k:], -LOG_SPREAD_BOUND, LOG_SPREAD_BOUND)) * factor

    def physical(self, y: np.ndarray) -> np.ndarray:
        """Model columns -> (..., K) physical means, then (with `spread`) K spreads."""
        mu = self.denormalize(y)
        return np.concatenate([mu, self.spread_of(y)], -1) if self.spread else mu

    def index(self, name: str) -> int:
        return self.names.index(name)

    def normalize(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        mean, std = self._stats(y)
        return (y - mean) / std

    @property
    def clips(self) -> bool:
        return bool(self.low)

    def denormalize(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Normalised model outputs -> physical units, within the training range."""
        mean, std = self._stats(y)
        return self.clip(self.means(y) * std + mean)

    def clip(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(..., K) physical outputs clipped to [low, high] (unchanged without a range)."""
        if not self.clips:
            return y
        if isinstance(y, torch.Tensor):
            low = torch.tensor(self.low, dtype=y.dtype, device=y.device)
            high = torch.tensor(self.high, dtype=y.dtype, device=y.device)
            return torch.maximum(torch.minimum(y, high), low)
        return np.clip(y, np.asarray(self.low), np.asarray(self.high))

    def _stats(self, like):
        if isinstance(like, torch.Tensor):
            return (
                torch.tensor(self.mean, dtype=like.dtype, device=like.device),
                torch.tensor(self.std, dtype=like.dtype, device=like.device),
            )
        return np.asarray(self.mean), np.asarray(self.std)

    def parse(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """(..., K) de-normalised outputs -> {name: (...)}, plus `<name>_rad` where known;
        (..., 2K) from `physical` with `spread` also gives `<name>_std`."""
        out = {n: y[..., i] for i, n in enumerate(self.names)}
        if y.shape[-1] == 2 * self.k and self.spread:
            out.update({f"{n}_std": y[..., self.k + i] for i, n in enumerate(self.names)})
        for i, n in enumerate(self.names):
            if i < len(self.units) and self.units[i].get("to_radians"):
                out[f"{n}_rad"] = y[..., i] * self.units[i]["to_radians"]
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OutputLayout:
        return cls(**d)


def expectation(
    logits: np.ndarray | torch.Tensor, centers: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """(..., K*N) logits over (K, N) bin centres -> (..., K) softmax expectations."""
    k, n = centers.shape
    if isinstance(logits, torch.Tensor):
        c = torch.as_tensor(centers, dtype=logits.dtype, device=logits.device)
        p = torch.softmax(logits.reshape(*logits.shape[:-1], k, n), dim=-1)
        return (p * c).sum(-1)
    z = logits.reshape(*logits.shape[:-1], k, n)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e * centers).sum(-1) / e.sum(-1)
