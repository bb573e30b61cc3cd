"""Sharpness-aware minimisation (Foret et al., ICLR 2021), as two passes around one step.

The first backward gives g at w; the weights move to w + rho * g / ||g|| (the steepest
ascent within an L2 ball); the second backward there gives the gradient the optimiser
uses, after the weights are put back. Only `loop._Training.step` calls it.
"""

from __future__ import annotations

import torch


def ascend(params: list[torch.nn.Parameter], rho: float) -> list[torch.Tensor | None] | None:
    """Move each parameter rho along its normalised gradient; returns the moves for
    `descend`, or None (nothing moved) when the gradient is not finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if not torch.isfinite(norm):
        return None
    scale = rho / (norm + 1e-12)
    moves: list[torch.Tensor | None] = []
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                moves.append(None)
                continue
            e = p.grad * scale
            p.add_(e)
            moves.append(e)
    return moves


def descend(params: list[torch.nn.Parameter], moves: list[torch.Tensor | None]) -> None:
    """Undo `ascend`: the weights return to where the step was taken from."""
    with torch.no_grad():
        for p, e in zip(params, moves, strict=True):
            if e is not None:
                p.sub_(e)
