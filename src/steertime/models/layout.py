"""The output layout of a model: which signals, in which order, and their normalisation.

Named once and parsed in one place — training, evaluation, the streaming predictor and
export all go through `OutputLayout`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


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

    @property
    def k(self) -> int:
        return len(self.names)

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
        return self.clip(y * std + mean)

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
        """(..., K) de-normalised outputs -> {name: (...)}, plus `<name>_rad` where known."""
        out = {n: y[..., i] for i, n in enumerate(self.names)}
        for i, n in enumerate(self.names):
            if i < len(self.units) and self.units[i].get("to_radians"):
                out[f"{n}_rad"] = y[..., i] * self.units[i]["to_radians"]
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OutputLayout:
        return cls(**d)
