"""One training step's forward and loss: what DDP wraps, so gradients sync once.

The loss is the weighted mean over outputs of the per-output MSE in normalised units, or,
with `train.spread`, the MSE plus a Gaussian NLL for the spreads, or, with `train.bins`, a
histogram cross-entropy; Komanda's autoregressive models add their teacher-forced term and
the auxiliary head its share. With `data.balance` each frame's term is weighted by the
rarity of its steering label. Shapes: frames (B, T, H, W, C), targets (B, T, K).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from steertime.models import SequenceModel, State
from steertime.models.layout import LOG_SPREAD_BOUND


class StepLoss(nn.Module):
    """One step's forward and loss; this is what DDP wraps, so gradients sync once."""

    def __init__(
        self,
        model: SequenceModel,
        weights: list[float],
        steer: int,
        lam: float,
        skip: int,
        features: bool = False,
        spread: bool = False,
        bin_centers: np.ndarray | None = None,
        precision: str = "fp32",
        aux_weight: float = 0.0,
        balance: tuple[np.ndarray, np.ndarray] | None = None,
        recon: tuple[float, tuple[int, int], int] | None = None,
    ):
        super().__init__()
        self.model, self.steer, self.lam, self.skip = model, steer, lam, skip
        self.aux_weight = aux_weight
        # (weight, (rows, columns), lead): the thumbnail of frame t+lead is redrawn from
        # frame t's features (lead 0) or from the memory's output at t (lead > 0)
        self.recon = recon
        self.features, self.spread = features, spread
        self.bf16 = precision == "bf16"
        self.register_buffer("w", torch.tensor(weights) / sum(weights))
        self.balanced = balance is not None
        if self.balanced:  # `data.balance`: (N-1,) inner bin edges, (N,) weights
            self.register_buffer("balance_edges", torch.tensor(balance[0]))
            self.register_buffer("balance_w", torch.tensor(balance[1]))
        self.bins = bin_centers is not None
        if self.bins:  # (K, N) bin centres in normalised units
            self.register_buffer("centers", torch.tensor(bin_centers, dtype=torch.float32))

    def _frames_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, T, K) per-frame terms -> (K,): their mean over the frames after the burn-in,
        each frame weighted by its steering label's rarity under `data.balance`."""
        x = x[:, self.skip :]
        if not self.balanced:
            return x.mean(dim=(0, 1))
        label = t[:, self.skip :, self.steer].contiguous()  # (B, T')
        w = self.balance_w[torch.bucketize(label, self.balance_edges)]
        return (x * w.unsqueeze(-1)).mean(dim=(0, 1))

    def _mse(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (B, T, K): weighted mean over outputs of the per-output MSE, burn-in excluded
        if self.spread:
            return self._nll(y, t)
        if self.bins:
            return self._hl_gauss(y, t)
        return (self._frames_mean((y - t).square(), t) * self.w).sum()

    def _hl_gauss(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (B, T, K*N) logits: cross-entropy against the label spread as a Gaussian of 0.75
        # bin widths over the bins (Imani & White 2018; Farebrother et al. 2024). Unlike a
        # one-hot class it keeps the label's position between two bins, so the expectation
        # can be exact, and neighbouring angles share what they learn.
        c = self.centers
        k, n = c.shape
        width = (c[:, 1:2] - c[:, :1]).view(k, 1)  # (K, 1)
        edges = torch.cat([c - width / 2, c[:, -1:] + width / 2], dim=-1)  # (K, N+1)
        tc = torch.minimum(torch.maximum(t, c[:, 0]), c[:, -1]).unsqueeze(-1)  # (B, T, K, 1)
        cdf = torch.special.ndtr((edges - tc) / (0.75 * width))  # (B, T, K, N+1)
        p = cdf[..., 1:] - cdf[..., :-1]
        p = p / p.sum(-1, keepdim=True)  # (B, T, K, N)
        logp = torch.log_softmax(y.reshape(*y.shape[:-1], k, n), dim=-1)
        ce = -(p * logp).sum(-1)  # (B, T, K)
        return (self._frames_mean(ce, t) * self.w).sum()

    def _nll(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (B, T, 2K): the means learn from the MSE exactly as without a spread, and the
        # spreads from the Gaussian negative log-likelihood of the *detached* means. A
        # plain NLL lets a model give up on hard frames (call them uncertain instead of
        # fitting them): on the tub's taps it cost validation RMSE 0.39 against 0.30.
        k = t.shape[-1]
        mu, log_s = y[..., :k], y[..., k:].clamp(-LOG_SPREAD_BOUND, LOG_SPREAD_BOUND)
        mse = (mu - t).square()
        nll = 0.5 * ((t - mu.detach()) * torch.exp(-log_s)).square() + log_s
        return (self._frames_mean(mse + nll, t) * self.w).sum()

    def _encode(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        # train.precision=bf16: the convolutions, where the time goes, run in bfloat16
        # (weights and their updates stay float32); memory, head and loss in float32.
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.features:  # precomputed encoder outputs: the CNN does not run
                feats = self.model.encode_features(frames)  # (B, T, E) -> (B, T, F)
            else:
                feats, state = self.model.encode(frames, state)  # (B, T, F), once per frame
        if self.bf16:
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        return feats.float(), state

    def forward(
        self,
        frames: torch.Tensor,
        target: torch.Tensor,
        state: State,
        missing: torch.Tensor | None = None,
        aux_target: torch.Tensor | None = None,
    ):
        feats, state = self._encode(frames, state)
        aux = self._aux(feats, aux_target) if aux_target is not None else 0.0
        kw = {} if missing is None else {"missing": missing}  # only flag models get it
        if self.recon is not None and self.recon[2]:  # redrawn from the memory's output
            y, state, memory = self.model.core_with_memory(feats, state, **kw)
            return self._mse(y, target) + aux + self.recon_loss(memory, frames), state
        if self.recon is not None:
            aux = aux + self.recon_loss(feats, frames)
        if not self.model.autoregressive:
            y, state = self.model.core(feats, state, **kw)
            return self._mse(y, target) + aux, state
        # Komanda: own-prediction steering + λ·(teacher-forced and own, all outputs)
        y_own, new_state = self.model.core(feats, state, **kw)
        y_tf, _ = self.model.core(feats, state, teacher=target, **kw)
        s = self.steer
        own_steer = self._frames_mean((y_own - target)[..., s : s + 1].square(), target)[0]
        loss = own_steer + self.lam * (self._mse(y_tf, target) + self._mse(y_own, target))
        return loss + aux, new_state

    def _aux(self, feats: torch.Tensor, aux_target: torch.Tensor) -> torch.Tensor:
        # (B, T, F) features -> (B, T, L*K) the outputs L leads later, normalised; their
        # MSE weighted per output as the main loss, averaged over the leads.
        b, t, n_lead, k = aux_target.shape
        a = self.model.aux_head(feats).view(b, t, n_lead, k)
        mse = (a - aux_target)[:, self.skip :].square().mean(dim=(0, 1, 2))  # (K,)
        return self.aux_weight * (mse * self.w).sum()

    def recon_loss(self, source: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        # (B, T, F) features or (B, T, H) memory at t -> (B, T, h*w) the grey thumbnail of
        # frame t+lead; its MSE after the burn-in (the chunk's last `lead` steps have no
        # frame to redraw), times the weight. Each thumbnail is standardised (the +2 grey
        # levels keep a blank frame's zero spread finite), so it is the view's layout that
        # is redrawn, not the room's brightness.
        weight, grid, lead = self.recon
        with torch.no_grad():
            b, t = frames.shape[:2]
            g = frames.float().mean(-1).flatten(0, 1).unsqueeze(1)  # (B*T, 1, H, W)
            g = nn.functional.adaptive_avg_pool2d(g, grid).flatten(1)  # (B*T, h*w)
            g = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 2.0)
            target = g.view(b, t, -1)
        pred = self.model.recon_head(source)  # (B, T, h*w)
        pred, target = pred[:, : t - lead], target[:, lead:]
        return weight * (pred - target)[:, self.skip :].square().mean()
