"""Attention over recent frames: a causal sliding-window transformer as a memory.

The core of a `cnn_*` model with `model.rnn=attn` (registered as `cnn_attn`): `layers`
pre-norm transformer blocks (Vaswani et al. 2017; pre-norm as in GPT-2), each attending
from a frame to itself and the `attn_window - 1` frames before it, with a learned bias per
head and per distance (relative positions: the same frame 5 steps back means the same at
any point of a drive). Where an LSTM squeezes the past into one vector and the TCN mixes a
fixed window with fixed weights, attention chooses per frame which recent frames to read.

Like the TCN, it cannot remember past its window: L blocks see exactly
`1 + L * (attn_window - 1)` frames. Streaming state: the core's last
`L * (attn_window - 1)` inputs (B, R, F) and which of them a stream has really seen
(B, R). Each call runs the blocks over [past, x], every block keeping only the positions
whose whole window it had, so a chunk, a whole sequence and frame-by-frame steps give the
same outputs. A fresh stream attends only to frames it has seen, not to the zeros of an
empty past.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.encoders import activation


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(..., N, D) -> (..., N-w+1, D, w): for each position from w-1 on, its w latest rows
    (oldest first). Slices rather than `unfold` keep the ONNX graph plain."""
    m = x.shape[-2] - w + 1
    return torch.stack([x[..., j : j + m, :] for j in range(w)], dim=-1)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, act: str) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # index w: distance window-1-w (the last column is the frame itself)
        self.rel_bias = nn.Parameter(torch.zeros(heads, window))
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), activation(act), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """h (B, N, D), valid (B, N) bool -> (B, N-w+1, D): the positions with a full window."""
        b, n, d = h.shape
        w, nh = self.window, self.heads
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        q = q[:, :, w - 1 :]  # (B, nh, M, dh), M = N-w+1
        kw, vw = _windows(k, w), _windows(v, w)  # (B, nh, M, dh, w)
        scores = torch.einsum("bhmd,bhmdw->bhmw", q, kw) / math.sqrt(d // nh)
        scores = scores + self.rel_bias[None, :, None, :].to(scores.dtype)
        seen = _windows(valid[..., None], w)[:, :, 0]  # (B, M, w)
        # A frame always reads itself, so no row is all masked (the rows of an empty past
        # give finite values no later block reads: they are masked as keys).
        seen = torch.cat([seen[..., :-1], torch.ones_like(seen[..., -1:])], dim=-1)
        scores = scores.masked_fill(~seen[:, None], float("-inf"))
        att = torch.einsum("bhmw,bhmdw->bhmd", scores.softmax(dim=-1), vw)  # (B, nh, M, dh)
        h = h[:, w - 1 :] + self.proj(att.transpose(1, 2).reshape(b, -1, d))
        return h + self.mlp(self.norm2(h))


class CausalAttention(nn.Module):
    def __init__(
        self,
        in_dim: int,
        hidden: int,
        layers: int,
        window: int = 16,
        heads: int = 4,
        act: str = "elu",
    ) -> None:
        super().__init__()
        if layers < 1 or window < 2 or heads < 1 or hidden % heads:
            raise SteertimeError(
                f"attention needs layers >= 1, attn_window >= 2 and hidden divisible by "
                f"attn_heads, got layers={layers}, attn_window={window}, hidden={hidden}, "
                f"attn_heads={heads}"
            )
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, heads, window, act) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.context = layers * (window - 1)  # past frames a stream keeps
        self.receptive_field = 1 + self.context

    def forward(
        self, x: torch.Tensor, past: torch.Tensor, seen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, F), past (B, R, F), seen (B, R) -> outputs (B, T, H), next past, next seen."""
        b, t = x.shape[:2]
        seq = torch.cat([past.to(x.dtype), x], dim=1)  # (B, R+T, F)
        known = torch.cat([seen > 0.5, torch.ones(b, t, dtype=torch.bool, device=x.device)], 1)
        h, valid = self.inp(seq), known  # (B, R+T, H), (B, R+T)
        for block in self.blocks:
            h = block(h, valid)  # each block is window-1 positions shorter
            valid = valid[:, block.window - 1 :]
        r = self.context
        return self.norm(h), seq[:, -r:], known[:, -r:].to(seen.dtype)
