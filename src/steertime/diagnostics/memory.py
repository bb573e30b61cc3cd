"""A synthetic memory task: a cue at the start of a sequence decides the target at its end.

Inputs are noise except for the first step, which carries the cue (±1); the target at
the last step is the cue's sign. Nothing in between helps. A vanilla RNN learns this only
for short gaps; an LSTM (or GRU) keeps learning it far further — the long-term-dependency
lesson, measured. A temporal convolution (`tcn`: 4 dilated levels, a 31-step window)
learns it while the cue is inside its window and is at chance, by construction, beyond;
so does attention over recent steps (`attn`: two blocks of 16 steps, the same 31-step
window), which can look the cue up directly instead of carrying it step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.attention import CausalAttention
from steertime.models.cnn_rnn import RECURRENT, WINDOWED
from steertime.models.temporal_conv import CausalTCN

CELLS = ("rnn", "gru", "lstm", "tcn", "attn")  # the order a lesson shows them in


@dataclass
class MemoryResult:
    cell: str
    gap: int
    accuracy: float  # on fresh sequences; 0.5 is chance
    final_loss: float


def _batch(gap: int, batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    cue = torch.randint(0, 2, (batch,), generator=g).float() * 2 - 1
    x = torch.randn(batch, gap + 1, 2, generator=g) * 0.5
    x[:, 0, 0] = cue
    x[:, :, 1] = 0.0
    x[:, 0, 1] = 1.0  # a marker saying "this is the cue step"
    return x, (cue > 0).float()


def memory_task(
    cell: str, gap: int, hidden: int = 32, steps: int = 400, lr: float = 3e-3, seed: int = 0
) -> MemoryResult:
    if cell not in CELLS:
        raise SteertimeError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if cell in WINDOWED:
        rnn = _Window(cell, hidden)
    else:
        rnn = RECURRENT[cell](2, hidden, batch_first=True)
    if cell == "lstm":  # forget gates start open (Jozefowicz et al. 2015): remember by default
        with torch.no_grad():
            rnn.bias_ih_l0[hidden : 2 * hidden].fill_(1.0)
    head = nn.Linear(hidden, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        x, y = _batch(gap, 64, g)
        out, _ = rnn(x)
        loss = nn.functional.binary_cross_entropy_with_logits(head(out[:, -1, :])[:, 0], y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([*rnn.parameters(), *head.parameters()], 5.0)
        opt.step()
    with torch.no_grad():
        x, y = _batch(gap, 1000, g)
        out, _ = rnn(x)
        acc = float(((head(out[:, -1, :])[:, 0] > 0).float() == y).float().mean())
    return MemoryResult(cell, gap, acc, loss.item())


class _Window(nn.Module):
    """A fixed-window core (31 steps) with nn.RNN's call: (B, T, 2) -> ((B, T, H), None)."""

    def __init__(self, cell: str, hidden: int) -> None:
        super().__init__()
        self.attn = cell == "attn"
        if self.attn:
            self.core = CausalAttention(2, hidden, layers=2, window=16)
        else:
            self.core = CausalTCN(2, hidden, levels=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        r = self.core.receptive_field - 1
        past = x.new_zeros(x.shape[0], r, x.shape[2])
        if self.attn:  # nothing before the sequence: an empty past, masked
            return self.core(x, past, x.new_zeros(x.shape[0], r))[0], None
        return self.core(x, past)[0], None
