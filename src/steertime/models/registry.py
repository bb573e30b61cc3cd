"""Model and encoder registries: `@register_model` + `create_model(name, **cfg)`.

Each model family lives in its own file and declares a config dataclass; the config is
stored beside the weights so a checkpoint can rebuild its model with no code changes.

As in timm, the registry imports no model file: `steertime/models/__init__.py` imports
every model file, whose decorators fill the tables below. A new model is a new file plus
one import line there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from steertime.errors import SteertimeError

_MODELS: dict[str, tuple[type, Callable[..., nn.Module], dict]] = {}
_ENCODERS: dict[str, tuple[type, Callable[..., nn.Module]]] = {}
# What an encoder's outputs depend on besides its config: name -> () -> {weights, preprocessing}
_PROVENANCE: dict[str, Callable[[], dict]] = {}
RANDOM_INIT = {"weights": "random-init", "preprocessing": "steertime"}


def _build_config(cls: type, name: str, kw: dict) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kw) - fields
    if unknown:
        raise SteertimeError(
            f"{name}: unknown config keys {sorted(unknown)}; valid keys: {sorted(fields)}"
        )
    return cls(**kw)


def register_model(name: str, config: type, **defaults: Any):
    """Register a builder `fn(cfg) -> nn.Module` under `name` with default overrides."""

    def deco(fn: Callable[..., nn.Module]):
        _MODELS[name] = (config, fn, defaults)
        return fn

    return deco


def register_encoder(name: str, config: type, provenance: Callable[[], dict] | None = None):
    """Register an encoder builder. `provenance()` says what its outputs depend on besides
    the config — `{"weights": <hash>, "preprocessing": <description>}` for pretrained
    weights; without it, randomly initialised weights and steertime's preprocessing."""

    def deco(fn: Callable[..., nn.Module]):
        _ENCODERS[name] = (config, fn)
        if provenance is not None:
            _PROVENANCE[name] = provenance
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def list_encoders() -> list[str]:
    return sorted(_ENCODERS)


def model_config(name: str, **kw: Any) -> Any:
    """The full config a model would be built with (defaults + overrides)."""
    if name not in _MODELS:
        raise SteertimeError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    cls, _, defaults = _MODELS[name]
    return _build_config(cls, name, {**defaults, **kw})


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build a registered model. Unknown config keys are an error that lists the valid ones."""
    cfg = model_config(name, **kw)
    model = _MODELS[name][1](cfg)
    model.model_name = name
    model.config = cfg
    return model


def _encoder(name: str) -> tuple[type, Callable[..., nn.Module]]:
    if name not in _ENCODERS:
        raise SteertimeError(
            f"unknown encoder {name!r}; registered: {', '.join(sorted(_ENCODERS))}"
        )
    return _ENCODERS[name]


def encoder_fields(name: str) -> set[str]:
    """The config keys an encoder accepts (so a model can pass on only those it takes)."""
    return {f.name for f in dataclasses.fields(_encoder(name)[0])}


def encoder_provenance(name: str) -> dict:
    """{"weights", "preprocessing"} of a registered encoder (a features store keys on it)."""
    _encoder(name)
    fn = _PROVENANCE.get(name)
    return dict(fn()) if fn is not None else dict(RANDOM_INIT)


def create_encoder(name: str, **kw: Any) -> nn.Module:
    cls, fn = _encoder(name)
    return fn(_build_config(cls, name, kw))
