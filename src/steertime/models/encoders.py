"""Per-frame CNN encoders: (N, C, H, W) normalised frames -> (N, F) features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.registry import register_encoder

_ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU}


def activation(name: str) -> nn.Module:
    """`elu` (the Keras PilotNets' choice) or `relu`: onnxruntime fuses Conv+ReLU, which
    makes a CPU step ~25% faster (docs/benchmarks.md), at the price of retraining."""
    if name not in _ACTIVATIONS:
        raise SteertimeError(f"act must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC in [0, 255] -> float NCHW in [-0.5, 0.5] (PilotNet's normalisation layer)."""
    return frames.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)


INITS = ("torch", "he")


@dataclass
class PilotNetConvConfig:
    height: int = 66
    width: int = 200
    in_channels: int = 3
    channels: tuple[int, ...] = (24, 36, 48, 64, 64)
    dropout: float = 0.0  # on the flattened features
    # After every convolution (Donkeycar's `linear` uses 0.2): on a few thousand frames of
    # one track it is what keeps the CNN from memorising the room (docs/rc_sessions.md).
    conv_dropout: float = 0.0
    act: str = "elu"
    # "he": convolutions drawn from N(0, 2 / fan_in), biases 0, so the frames' differences
    # reach the head at their own scale; "torch": PyTorch's default, under which they
    # shrink ~0.55x per layer (0.002 of the input's at the last) and training first sits
    # at predict-the-mean for ~100 steps (docs/benchmarks.md, sixteenth session).
    init: str = "torch"


class PilotNetConv(nn.Module):
    """NVIDIA PilotNet's convolutional stack: three 5x5 stride-2, two 3x3 stride-1 convs."""

    def __init__(self, cfg: PilotNetConvConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        h, w = cfg.height, cfg.width
        for i, _ in enumerate(c):
            k, s = (5, 2) if i < 3 else (3, 1)
            h, w = (h - k) // s + 1, (w - k) // s + 1
        if h < 1 or w < 1:
            raise SteertimeError(
                f"frames of {cfg.height}x{cfg.width} are too small for PilotNet's five "
                "convolutions: they need at least 61x61 (prepare --size, e.g. 66x200)"
            )
        for i, cout in enumerate(c):
            k, s = (5, 2) if i < 3 else (3, 1)
            layers += [nn.Conv2d(cin, cout, k, s), activation(cfg.act)]
            if cfg.conv_dropout > 0:
                layers.append(nn.Dropout(cfg.conv_dropout))
            cin = cout
        layers += [nn.Flatten(), nn.Dropout(cfg.dropout)]
        self.net = nn.Sequential(*layers)
        if cfg.init not in INITS:
            raise SteertimeError(f"init must be one of {INITS}, got {cfg.init!r}")
        if cfg.init == "he":
            for m in self.net:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            probe = torch.zeros(1, cfg.in_channels, cfg.height, cfg.width)
            self.out_dim = self.net(probe).shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) float, already normalised by `to_float` -> (N, F)
        return self.net(x)


@register_encoder("pilotnet_conv", PilotNetConvConfig)
def pilotnet_conv(cfg: PilotNetConvConfig) -> PilotNetConv:
    return PilotNetConv(cfg)
