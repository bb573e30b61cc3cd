"""Start a run from another run's weights, and freeze parts of the model.

`train.init_from=RUN` copies every tensor whose name and shape match between runs of one
model; from another model only the encoder's (a head or core whose shapes happen to match
means something else there). From a `pilotnet` run into a `cnn_lstm` (both built on
`PilotNetConv`) that is the two-stage recipe — learn what to look at one frame
at a time, then learn what to remember — with `train.freeze=encoder` keeping the first
stage as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from steertime.errors import SteertimeError
from steertime.models.checkpoint import load_model


@dataclass
class WarmStart:
    source: str  # the run's model name
    loaded: list[str]  # our tensor names copied from it
    fresh: list[str]  # our tensor names it had no match for (left as initialised)
    clash: list[str]  # same name, another shape: not copied

    def summary(self, run: str) -> str:
        def modules(names: list[str]) -> str:
            return ", ".join(dict.fromkeys(n.split(".")[0] for n in names)) or "none"

        return (
            f"train.init_from={run} ({self.source}): {len(self.loaded)} tensors copied "
            f"({modules(self.loaded)}); fresh: {modules(self.fresh)}"
            + (f"; not copied, other shapes: {', '.join(self.clash[:3])}" if self.clash else "")
        )


def warm_start(model: nn.Module, run: str, model_name: str) -> WarmStart:
    """Copy `run`'s matching weights into `model` (a `model_name`) in place; refuse if
    nothing matches."""
    source, meta = load_model(run)
    theirs = source.state_dict()
    if meta.model != model_name:
        theirs = {k: v for k, v in theirs.items() if k.startswith("encoder.")}
    ours = model.state_dict()
    loaded = [k for k, v in ours.items() if k in theirs and theirs[k].shape == v.shape]
    clash = [
        f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}"
        for k, v in ours.items()
        if k in theirs and theirs[k].shape != v.shape
    ]
    if not loaded:
        why = f"; same names, other shapes: {', '.join(clash[:3])}" if clash else ""
        raise SteertimeError(
            f"train.init_from={run}: none of its {meta.model} weights fit this {model_name}{why}"
        )
    for k in loaded:
        ours[k].copy_(theirs[k])
    copied = set(loaded)
    return WarmStart(meta.model, loaded, [k for k in ours if k not in copied], clash)


def freeze(model: nn.Module, prefixes: str) -> list[str]:
    """Stop training every parameter under the comma-separated module `prefixes`.

    Returns the frozen parameter names; a prefix that names no parameter is refused (a
    typo would otherwise train everything and say nothing)."""
    wanted = [p.strip() for p in prefixes.split(",") if p.strip()]
    named = dict(model.named_parameters())
    frozen: list[str] = []
    for prefix in wanted:
        hit = [n for n in named if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            tops = sorted(dict.fromkeys(n.split(".")[0] for n in named))
            raise SteertimeError(
                f"train.freeze: {prefix!r} names no parameter of this model; "
                f"its modules: {', '.join(tops)}"
            )
        frozen += hit
    if frozen and len(set(frozen)) == len(named):
        raise SteertimeError("train.freeze: that is every parameter; nothing would train")
    # A frozen BatchNorm in training mode still normalises by each batch and moves its
    # running statistics, so "frozen" would not be what the car runs. (The ImageNet
    # encoder keeps its own in eval mode, which is fine.)
    was = model.training
    model.train(True)
    moving = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.training
        and any(name == p or name.startswith(p + ".") for p in wanted)
    ]
    model.train(was)
    if moving:
        raise SteertimeError(
            f"train.freeze: {moving[0]} is a BatchNorm layer, whose statistics keep moving "
            "while it trains; freeze an encoder built with norm: none or group"
        )
    for n in frozen:
        named[n].requires_grad_(False)
    return frozen
