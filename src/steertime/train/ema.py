"""An exponential moving average of the weights (Polyak averaging), `optim.ema=DECAY`.

Validation, `checkpoints/best` and hence every exported model use the averaged weights;
the optimiser keeps stepping the raw ones. On small real logs the validation RMSE of the
raw weights jumps by 10-15% from one epoch to the next; the average is what a user wants
to keep. The warm-up `(1 + n) / (10 + n)` stops the first steps' random weights from
lingering in the average.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float, n: int = 0) -> None:
        if not 0 < decay < 1:
            from steertime.errors import SteertimeError

            raise SteertimeError(f"optim.ema must be in (0, 1) (or 0: off), got {decay}")
        self.decay, self.n = decay, n
        self.shadow = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if v.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach(), 1 - d)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """The model with the averaged weights inside the block, its own after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=False)
