"""What every steertime model shares: a streaming-shaped forward and explicit state.

    y, state = model(frames, state)     # frames (B, T, H, W, 3) uint8 -> y (B, T, K)

One step (T=1) or a thousand run through the same code. `state` is a dict of tensors
with the batch in dimension 0, so rows can be reset independently at drive boundaries
and the whole state can be saved, carried across TBPTT chunks or exported to ONNX.
Outputs are in normalised units; `OutputLayout` turns them into physical ones.

The contract every model keeps, declared here rather than guessed with `hasattr`:
- `model_name`, `config`: the registered name and its config dataclass (set by
  `create_model`; a checkpoint stores both, so it can rebuild the model);
- `n_outputs`, `autoregressive`;
- `missing_input`: whether `core` reads a per-frame "frame missing" flag (a dropped,
  frozen, black or glaring frame; see `steertime.data.faults`) and rolls its state
  forward on memory alone. A model without it is held at its last output by the
  streaming predictor instead;
- `init_state`, `encode` (frames -> per-frame features) and `core` (features -> outputs);
- `cached_encoder()` / `encode_features()`: whether, and how, the model trains over a
  features store (the encoder's outputs computed once, `steertime.data.features`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

State = dict[str, torch.Tensor]


class SequenceModel(nn.Module):
    model_name: str  # the registered name (set by `create_model`)
    config: Any  # the registered config dataclass (set by `create_model`)
    n_outputs: int
    autoregressive: bool = False
    missing_input: bool = False

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return {}

    def reset_rows(self, state: State, reset: torch.Tensor) -> State:
        """Zero the state of batch rows where `reset` (B,) is true."""
        if not state:
            return state
        fresh = self.init_state(reset.shape[0], reset.device)
        out = {}
        for k, v in state.items():
            mask = reset.view(-1, *([1] * (v.dim() - 1)))
            out[k] = torch.where(mask, fresh[k].to(v.dtype), v)
        return out

    def encode(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(B, T, H, W, 3) uint8 -> per-frame features (B, T, F); computed once per frame."""
        raise NotImplementedError

    def core(
        self,
        feats: torch.Tensor,
        state: State,
        teacher: torch.Tensor | None = None,
        missing: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """(B, T, F) features -> (B, T, K) outputs. `teacher` (B, T, K): feed truth back.
        `missing` (B, T) bool: frames that carried no image (read by `missing_input` models)."""
        raise NotImplementedError

    def cached_encoder(self) -> tuple[str, dict] | None:
        """(encoder name, encoder config) when `encode_features` can replace `encode`
        over a features store of that encoder's outputs; None when it cannot."""
        return None

    def encode_features(self, raw: torch.Tensor) -> torch.Tensor:
        """Precomputed encoder outputs (B, T, E) -> features (B, T, F), as `encode` would
        give them. Only for models whose `cached_encoder()` is not None."""
        raise NotImplementedError(f"{type(self).__name__} cannot run over cached features")

    def forward(
        self, frames: torch.Tensor, state: State | None = None, missing: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(frames.shape[0], frames.device)
        feats, state = self.encode(frames, state)
        if missing is None:
            return self.core(feats, state)
        return self.core(feats, state, missing=missing)


def detach_state(state: State) -> State:
    return {k: v.detach() for k, v in state.items()}
