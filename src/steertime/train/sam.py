"""Sharpness-aware minimisation (Foret et al., ICLR 2021), as two passes around one step.

The first backward gives g at w; the weights move to w + rho * g / ||g|| (the steepest
ascent within an L2 ball); the second backward there gives the gradient the optimiser
uses, after the weights are put back. Only `loop._Training.step` calls it.
"""

from __future__ import annotations

import torch

Moves = list[tuple[torch.nn.Parameter, torch.Tensor]]


def ascend(params: list[torch.nn.Parameter], rho: float) -> Moves | None:
    """Move each parameter that has a gradient rho along the normalised gradient; returns
    the moves for `descend`, or None (nothing moved) when the gradient is not finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    norm = torch.nn.utils.get_total_norm(grads)
    if not torch.isfinite(norm):
        return None
    scale = rho / (float(norm) + 1e-12)
    moves = [(p, p.grad * scale) for p in params if p.grad is not None]
    with torch.no_grad():
        for p, e in moves:
            p.add_(e)
    return moves


def descend(moves: Moves) -> None:
    """Undo `ascend`: the weights return to where the step was taken from."""
    with torch.no_grad():
        for p, e in moves:
            p.sub_(e)
