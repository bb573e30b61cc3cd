"""An ensemble of trained runs that streams, exports and evaluates as one model.

    steertime ensemble runs/lstm_s0 runs/lstm_s1 runs/pilotnet --out runs/ens

Training the same recipe with another seed moves a held-out RMSE by as much as changing
the model family (docs/benchmarks.md): averaging K members removes part of that variance
at K times the per-frame cost. The members run side by side on the same frame; each keeps
its own state (keys prefixed `m<i>_`), so autoregressive members feed back their own
outputs, and the average is taken in the first member's normalised units:

    y = sum_i w_i (y_i * scale_i + shift_i) / sum_i w_i
                                            scale_i = std_i / std_0
                                            shift_i = (mean_i - mean_0) / std_0

so members trained on different caches (different output statistics) still average in
physical units. They must share the frame preprocessing and the output names. The weights
`w_i` default to 1; unequal ones let a mix of families count each family once (e.g. one
end-to-end LSTM at 1/2 and three cheap LSTMs over frozen features at 1/6 each).

Members trained with `train.spread` (all of them, or none) make an ensemble with a spread:
each member's calibrated standard deviation, and the disagreement between the members,
combined as the spread of the mixture of their Gaussians (a "deep ensemble"):

    var = sum_i w_i (s_i^2 + y_i^2) / sum_i w_i - y^2

so one member's spike on a clean frame counts for 1/M of it, while a blind stretch that
makes every member unsure counts in full. When every member reads the frame-missing flag
(`missing_input`), so does the ensemble: on a missing frame each member rolls its own
state forward; otherwise the streaming predictor holds the ensemble's last output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from steertime.errors import SteertimeError
from steertime.models.base import SequenceModel, State
from steertime.models.layout import LOG_SPREAD_BOUND, expectation
from steertime.models.registry import create_model, register_model


def _default_members() -> list[dict]:
    return [{"model": "pilotnet", "config": {}}, {"model": "cnn_lstm", "config": {}}]


@dataclass
class EnsembleConfig:
    n_outputs: int = 1
    height: int = 66
    width: int = 200
    # [{"model": registered name, "config": its config, "scale": [K], "shift": [K],
    #   "weight": w (optional, default 1), "centers": [K][N] (a categorical head's bin
    #   values, `train.bins`; optional), "spread_scale": [K] (with `spread`)}]
    members: list[dict] = field(default_factory=_default_members)
    spread: bool = False  # every member predicts a spread; so does the ensemble


class Ensemble(SequenceModel):
    def __init__(self, cfg: EnsembleConfig) -> None:
        super().__init__()
        if not cfg.members:
            raise SteertimeError("ensemble: members is empty; give at least one run")
        self.n_outputs = cfg.n_outputs
        self.spread = cfg.spread
        shape = {"n_outputs": cfg.n_outputs, "height": cfg.height, "width": cfg.width}
        members, scale, shift, weight, self._binned = [], [], [], [], []
        for i, m in enumerate(cfg.members):
            if not isinstance(m, dict) or "model" not in m:
                raise SteertimeError(f"ensemble: member {i} must be a dict with a 'model' key")
            if m["model"] == "ensemble":
                raise SteertimeError("ensemble: a member cannot itself be an ensemble")
            members.append(create_model(m["model"], **{**shape, **m.get("config", {})}))
            scale.append(m.get("scale") or [1.0] * cfg.n_outputs)
            shift.append(m.get("shift") or [0.0] * cfg.n_outputs)
            weight.append(float(m.get("weight", 1.0)))
            if cfg.spread:  # (K,) member i's calibration, applied before mixing
                calib = m.get("spread_scale") or [1.0] * cfg.n_outputs
                self.register_buffer(f"spread_scale{i}", torch.tensor(calib, dtype=torch.float32))
            # A categorical member's logits become its expectation before averaging.
            if m.get("centers"):
                self.register_buffer(f"centers{i}", torch.tensor(m["centers"]))  # (K, N)
            self._binned.append(bool(m.get("centers")))
        if min(weight) < 0 or sum(weight) <= 0:
            raise SteertimeError(
                f"ensemble: weights must be >= 0 with a positive sum, got {weight}"
            )
        self.members = nn.ModuleList(members)
        self.missing_input = all(bool(m.missing_input) for m in members)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))  # (M, K)
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))  # (M, K)
        w = torch.tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", (w / w.sum()).view(-1, 1, 1, 1))  # (M, 1, 1, 1)
        # Each member's per-frame feature width, so `core` can split the concatenation.
        with torch.no_grad():
            probe = torch.zeros(1, 1, cfg.height, cfg.width, 3, dtype=torch.uint8)
            self._dims = [m.encode(probe, m.init_state(1))[0].shape[-1] for m in members]

    def _split(self, state: State) -> list[State]:
        parts: list[State] = [{} for _ in self.members]
        for key, v in state.items():
            i, name = key[1:].split("_", 1)
            parts[int(i)][name] = v
        return parts

    @staticmethod
    def _join(parts: list[State]) -> State:
        return {f"m{i}_{k}": v for i, p in enumerate(parts) for k, v in p.items()}

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return self._join([m.init_state(batch, device) for m in self.members])

    def reset_rows(self, state: State, reset: torch.Tensor) -> State:
        parts = self._split(state)
        return self._join(
            [m.reset_rows(p, reset) for m, p in zip(self.members, parts, strict=True)]
        )

    def encode(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        feats, parts = [], []
        for m, p in zip(self.members, self._split(state), strict=True):
            f, p = m.encode(frames, p)
            feats.append(f)
            parts.append(p)
        return torch.cat(feats, dim=-1), self._join(parts)  # (B, T, sum F_i)

    def core(
        self, feats: torch.Tensor, state: State, teacher=None, missing=None
    ) -> tuple[torch.Tensor, State]:
        ys, sds, parts = [], [], []
        chunks = torch.split(feats, self._dims, dim=-1)
        kw = {} if missing is None else {"missing": missing}  # only when all members read it
        k = self.scale.shape[1]  # outputs
        for i, (m, f, p) in enumerate(zip(self.members, chunks, self._split(state), strict=True)):
            # A teacher in the ensemble's units, re-expressed in member i's own.
            t = None if teacher is None else (teacher - self.shift[i]) / self.scale[i]
            y, p = m.core(f, p, teacher=t, **kw)
            if self._binned[i]:
                y = expectation(y, getattr(self, f"centers{i}"))  # (B, T, K*N) -> (B, T, K)
            if self.spread:  # member i's calibrated standard deviation, in our units
                log_s = y[..., k:].clamp(-LOG_SPREAD_BOUND, LOG_SPREAD_BOUND)
                sds.append(torch.exp(log_s) * getattr(self, f"spread_scale{i}") * self.scale[i])
            ys.append(y[..., :k] * self.scale[i] + self.shift[i])
            parts.append(p)
        mu_i = torch.stack(ys)  # (M, B, T, K)
        mu = (mu_i * self.weight).sum(0)  # (B, T, K)
        if not self.spread:
            return mu, self._join(parts)
        second = ((torch.stack(sds).square() + mu_i.square()) * self.weight).sum(0)
        var = (second - mu.square()).clamp_min(1e-12)
        return torch.cat([mu, 0.5 * torch.log(var)], dim=-1), self._join(parts)  # (B, T, 2K)


@register_model("ensemble", EnsembleConfig)
def ensemble(cfg: EnsembleConfig) -> Ensemble:
    return Ensemble(cfg)


def build_ensemble(
    runs: list[str | Path],
    out: str | Path,
    overwrite: bool = False,
    weights: list[float] | None = None,
) -> Path:
    """Combine trained runs into a run folder `out` that predict/evaluate/export/stream
    use like any other, averaging them with `weights` (default equal). Refuses members
    that see frames differently or predict other outputs, naming the run that differs."""
    from steertime.models.checkpoint import load_model, model_meta, save_checkpoint
    from steertime.models.layout import OutputLayout

    if len(runs) < 2:
        raise SteertimeError("ensemble: give at least two runs")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):  # their signs are the model's to check (Ensemble)
        raise SteertimeError(f"ensemble: {len(weights)} weights for {len(runs)} runs")
    out = Path(out)
    if (out / "checkpoints").exists() and not overwrite:
        raise SteertimeError(f"{out}: already holds a run (use --overwrite to replace it)")
    loaded = [load_model(r) for r in runs]
    (_, first), ref = loaded[0], str(runs[0])
    frame = first.require_frame()
    members, lows, highs = [], [], []
    for run, (_, meta), w in zip(runs, loaded, weights, strict=True):
        if meta.model == "ensemble":
            raise SteertimeError(f"{run}: is an ensemble; give its member runs instead")
        if meta.layout.spread != first.layout.spread:
            raise SteertimeError(
                f"{run}: {'predicts' if meta.layout.spread else 'does not predict'} a spread "
                f"(train.spread) and {ref} {'does' if first.layout.spread else 'does not'}: "
                "an ensemble's members all predict one, or none does"
            )
        if meta.layout.names != first.layout.names:
            raise SteertimeError(
                f"{run}: predicts {meta.layout.names}, {ref} predicts {first.layout.names}"
            )
        if meta.require_frame() != frame:
            raise SteertimeError(
                f"{run}: frames prepared as {meta.frame.to_dict()}, {ref} as {frame.to_dict()}"
                " (members must see the same frames)"
            )
        if meta.source_size != first.source_size or meta.lead != first.lead:
            raise SteertimeError(
                f"{run}: camera {meta.source_size} / lead {meta.lead} differ from {ref}'s "
                f"{first.source_size} / {first.lead}"
            )
        lay = meta.layout
        members.append(
            {
                "model": meta.model,
                "config": dict(meta.model_config),
                "scale": [s / s0 for s, s0 in zip(lay.std, first.layout.std, strict=True)],
                "shift": [
                    (m - m0) / s0
                    for m, m0, s0 in zip(lay.mean, first.layout.mean, first.layout.std, strict=True)
                ],
                "weight": w,
                **({"centers": lay.bin_centers().tolist()} if lay.bins else {}),
                **({"spread_scale": list(lay.spread_scale or [1.0] * lay.k)} if lay.spread else {}),
            }
        )
        lows.append(lay.low)
        highs.append(lay.high)
    model = create_model(
        "ensemble",
        n_outputs=first.layout.k,
        height=frame.height,
        width=frame.width,
        members=members,
        spread=first.layout.spread,
    )
    for slot, (member, _) in zip(model.members, loaded, strict=True):
        slot.load_state_dict(member.state_dict())
    clip = all(lows) and all(highs)
    layout = OutputLayout(
        names=list(first.layout.names),
        mean=list(first.layout.mean),
        std=list(first.layout.std),
        units=list(first.layout.units),
        weights=list(first.layout.weights),
        low=[min(v) for v in zip(*lows, strict=True)] if clip else [],
        high=[max(v) for v in zip(*highs, strict=True)] if clip else [],
        # the members' spreads are calibrated already; the mixture's needs no scale
        spread=first.layout.spread,
        spread_scale=[1.0] * first.layout.k if first.layout.spread else [],
    )
    same_data = len({m.data_hash for _, m in loaded}) == 1
    extra = {
        "frame": frame.to_dict(),
        "source_size": list(first.source_size) if first.source_size else None,
        "lead_frames": first.lead,
        "data_hash": first.data_hash if same_data else None,
        "data_path": first.data_path,
        "members": [
            {
                "run": str(Path(r).resolve()),
                "model": m.model,
                "epoch": m.epoch,
                "score": m.score,
                "weight": w,
            }
            for r, (_, m), w in zip(runs, loaded, weights, strict=True)
        ],
    }
    save_checkpoint(out / "checkpoints" / "best", model, model_meta(model, layout, extra))
    return out
