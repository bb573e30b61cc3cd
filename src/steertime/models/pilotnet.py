"""NVIDIA PilotNet (Bojarski et al. 2016): the single-frame baseline.

66x200 input, conv 24/36/48 5x5 stride 2, 64/64 3x3, dense 100-50-10, ~250k parameters.
It sees one frame, so its state is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from steertime.models.base import SequenceModel, State
from steertime.models.encoders import PilotNetConv, PilotNetConvConfig, activation, to_float
from steertime.models.registry import register_model


@dataclass
class PilotNetConfig:
    n_outputs: int = 1
    height: int = 66
    width: int = 200
    dropout: float = 0.0
    conv_dropout: float = 0.0  # after every convolution, as in Donkeycar's `linear`
    act: str = "elu"  # or "relu": faster on CPU runtimes that fuse it into the conv
    init: str = "torch"  # or "he": the convolutions' init (see PilotNetConvConfig)
    pool: str = "flatten"  # or "spatial_softmax" (see PilotNetConvConfig)
    norm: str = "none"  # or "batch" / "group" after every convolution


class PilotNet(SequenceModel):
    def __init__(self, cfg: PilotNetConfig) -> None:
        super().__init__()
        self.n_outputs = cfg.n_outputs
        self.encoder = PilotNetConv(
            PilotNetConvConfig(
                cfg.height,
                cfg.width,
                conv_dropout=cfg.conv_dropout,
                act=cfg.act,
                init=cfg.init,
                pool=cfg.pool,
                norm=cfg.norm,
            )
        )
        self.head = nn.Sequential(
            nn.Linear(self.encoder.out_dim, 100),
            activation(cfg.act),
            nn.Dropout(cfg.dropout),
            nn.Linear(100, 50),
            activation(cfg.act),
            nn.Linear(50, 10),
            activation(cfg.act),
            nn.Linear(10, cfg.n_outputs),
        )

    def encode(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        b, t = frames.shape[:2]
        feats = self.encoder(to_float(frames.flatten(0, 1)))  # (B*T, F)
        return feats.view(b, t, -1), state

    def core(
        self, feats: torch.Tensor, state: State, teacher=None, missing=None
    ) -> tuple[torch.Tensor, State]:
        # No memory to carry through a missing frame: the predictor holds the last output.
        return self.head(feats), state  # (B, T, K)


@register_model("pilotnet", PilotNetConfig)
def pilotnet(cfg: PilotNetConfig) -> PilotNet:
    return PilotNet(cfg)
