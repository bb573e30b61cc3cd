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
POOLS = ("flatten", "spatial_softmax")
NORMS = ("none", "batch", "group")


class SpatialSoftmax(nn.Module):
    """Each channel's map -> where it fires: the softmax-weighted mean of x and y in [-1, 1]
    (Levine et al. 2016). (N, C, H, W) -> (N, 2C): the features say *where* the line is,
    with 2C numbers instead of C*H*W that a linear layer could fit to the room."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], 1))  # (HW, 2)
        self.log_temp = nn.Parameter(torch.zeros(channels))  # learned sharpness per channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # Coordinates to a few pixels need float32 even when the convolutions run in bf16.
        with torch.autocast(x.device.type, enabled=False):
            return self._where(x, n, c, h, w)

    def _where(self, x: torch.Tensor, n: int, c: int, h: int, w: int) -> torch.Tensor:
        logits = (
            x.to(torch.promote_types(x.dtype, torch.float32)).reshape(n, c, h * w)
            * self.log_temp.exp()[:, None]
        )
        attn = torch.softmax(logits, dim=-1)  # (N, C, HW)
        return (attn @ self.grid).reshape(n, 2 * c)  # (N, C, 2) -> (N, 2C)


def _norm(kind: str, channels: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "group":  # the same in training and in the car, whatever the batch
        return [nn.GroupNorm(max(1, channels // 8), channels)]
    return []


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
    # "flatten" (PilotNet's): every position of the last map into the projection;
    # "spatial_softmax": where each channel fires, 2 numbers per channel (SpatialSoftmax).
    pool: str = "flatten"
    # After every convolution, before the activation: "batch" (BatchNorm; its running
    # statistics are what the car uses) or "group" (GroupNorm, 8 channels a group).
    norm: str = "none"


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
        for name, value, allowed in (("pool", cfg.pool, POOLS), ("norm", cfg.norm, NORMS)):
            if value not in allowed:
                raise SteertimeError(f"{name} must be one of {allowed}, got {value!r}")
        if cfg.init not in INITS:
            raise SteertimeError(f"init must be one of {INITS}, got {cfg.init!r}")
        for i, cout in enumerate(c):
            k, s = (5, 2) if i < 3 else (3, 1)
            layers += [nn.Conv2d(cin, cout, k, s), *_norm(cfg.norm, cout), activation(cfg.act)]
            if cfg.conv_dropout > 0:
                layers.append(nn.Dropout(cfg.conv_dropout))
            cin = cout
        pool = SpatialSoftmax(cin, h, w) if cfg.pool == "spatial_softmax" else nn.Flatten()
        layers += [pool, nn.Dropout(cfg.dropout)]
        self.net = nn.Sequential(*layers)
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
