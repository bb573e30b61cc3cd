"""A memory with a fixed horizon: residual causal dilated 1D convolutions over frames.

The temporal convolutional network of Bai, Kolter & Koltun (2018, "An empirical evaluation
of generic convolutional and recurrent networks for sequence modeling") as the core of a
`cnn_*` model (`model.rnn=tcn`). Level i convolves with dilation 2**i, so L levels of
kernel k see exactly `1 + (k-1)(2**L - 1)` frames — 31 for k = 3, L = 4 (1.5 s at 20 Hz)
— and nothing before them. Where an LSTM *learns* how long to remember, this network
cannot remember past its window; that is the comparison it is here for.

Streaming state: the core's last `receptive_field - 1` inputs (B, R, F). Each call runs
the convolutions without padding over [past, x] and keeps the outputs of x, so a chunk, a
whole sequence and frame-by-frame steps give the same outputs. A fresh stream's past is
zeros — the same as the zero padding of the whole sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.encoders import activation


class CausalTCN(nn.Module):
    def __init__(
        self, in_dim: int, hidden: int, levels: int, kernel: int = 3, act: str = "elu"
    ) -> None:
        super().__init__()
        if levels < 1 or kernel < 2:
            raise SteertimeError(
                f"a temporal convolution needs layers >= 1 and tcn_kernel >= 2, "
                f"got layers={levels}, tcn_kernel={kernel}"
            )
        self.inp = nn.Linear(in_dim, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel, dilation=2**i) for i in range(levels)
        )
        self.act = activation(act)
        self.shrink = [(kernel - 1) * 2**i for i in range(levels)]  # frames each level eats
        self.receptive_field = 1 + sum(self.shrink)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), past (B, R, F) -> outputs (B, T, H), the next past (B, R, F)."""
        seq = torch.cat([past.to(x.dtype), x], dim=1)  # (B, R+T, F)
        h = self.inp(seq).transpose(1, 2)  # (B, H, R+T)
        for conv, cut in zip(self.convs, self.shrink, strict=True):
            h = h[..., cut:] + self.act(conv(h))  # residual; each level is `cut` shorter
        return h.transpose(1, 2), seq[:, -past.shape[1] :]
