"""The optimiser and its learning-rate schedule (linear warm-up, then cosine to 5% or
constant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from steertime.errors import SteertimeError


def lr_at(step: int, total: int, cfg, warmup: int | None = None) -> float:
    """The learning rate at `step` of `total`; `warmup` overrides cfg.warmup_steps (see
    `effective_warmup`)."""
    warmup = cfg.warmup_steps if warmup is None else warmup
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise SteertimeError(f"optim.name must be adam or sgd, got {cfg.name!r}")
