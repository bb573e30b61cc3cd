"""Training configuration: dataclasses with defaults, dotted overrides, full config saved.

cfg = TrainConfig()                                  # every default
cfg = apply_overrides(cfg, ["optim.lr=3e-4", "model.hidden=128"])   # unknown keys fail
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steertime.errors import SteertimeError


@dataclass
class DataConfig:
    cache: str = ""
    outputs: list[str] = field(default_factory=lambda: ["steering"])
    weights: list[float] = field(default_factory=list)  # loss weight per output; default 1
    features: str = ""  # a features store (steertime features): train without running the CNN
    # Augmentation of training chunks (see train/batches.py). `flip` mirrors left-right and
    # negates steering: off by default, since a mirrored right-hand-traffic road teaches
    # driving on the left; fine for tracks without a lane side (Udacity sim, Donkeycar).
    flip: bool = False
    brightness: float = 0.0  # ± fraction of frame brightness, drawn per sequence
    # Train frame t on the log at t + lead (frames): undoes the demonstrator's reaction
    # delay, which a model otherwise learns to copy (see docs/training.md).
    lead: int = 0


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    clip_norm: float = 15.0  # global gradient norm; 0 disables (Komanda used 15)
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    ema: float = 0.0  # decay of a moving average of the weights kept as the model (0: off)


@dataclass
class LoopConfig:
    mode: str = "stateful"  # stateful (TBPTT, state carried) | windows (random, burn-in)
    seq_len: int = 10
    burn_in: int = 10  # windows mode: steps run before the loss counts
    batch_size: int = 16  # streams (lanes) in all, over every process
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit)
    patience: int = 5  # epochs without a better val RMSE before stopping
    seed: int = 0
    checkpoint_every: int = 200  # steps between resumable checkpoints
    ar_lambda: float = 0.5  # autoregressive: weight of teacher-forced + all-output terms
    threads: int = 0  # torch CPU threads (0: torch default)
    device: str = "auto"  # auto | cpu | cuda
    init_from: str = ""  # start from a run's best weights (e.g. fine-tune after features)
    diagnostics: bool = False  # per-layer grad norms, update ratios, saturation → TensorBoard


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"name": "cnn_lstm"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    out: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SteertimeError(
                f"unknown config sections {sorted(unknown)}; known: {sorted(known)}"
            )
        cfg = cls()
        for section in ("data", "optim", "train"):
            if section in d:
                sub = getattr(cfg, section)
                for k, v in d[section].items():
                    _check_key(sub, k, section)
                    setattr(sub, k, v)
        if "model" in d:
            cfg.model = dict(d["model"])
        if "out" in d:
            cfg.out = d["out"]
        return cfg


def _check_key(obj: Any, key: str, section: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    if key not in names:
        raise SteertimeError(f"unknown config key {section}.{key}; valid: {sorted(names)}")


def _coerce(text: str, like: Any, key: str) -> Any:
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
        if isinstance(like, list | tuple):
            items = [s for s in text.split(",") if s]
            elem = like[0] if like else ""
            return type(like)(_coerce(s, elem, key) for s in items)
        if isinstance(like, dict):
            return yaml.safe_load(text)
    except ValueError:
        raise SteertimeError(f"{key}={text!r}: expected a {type(like).__name__}") from None
    return text


def apply_overrides(cfg: TrainConfig, pairs: list[str]) -> TrainConfig:
    """Apply `section.key=value` overrides; `model.*` keys are checked against the model."""
    from steertime.models import model_config

    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SteertimeError(f"override {pair!r} must look like section.key=value")
        section, name = key.split(".", 1)
        if section == "model":
            if name == "name":
                cfg.model = {"name": value, **{k: v for k, v in cfg.model.items() if k != "name"}}
                continue
            defaults = dataclasses.asdict(model_config(cfg.model["name"]))
            if name not in defaults:
                raise SteertimeError(
                    f"unknown config key model.{name} for {cfg.model['name']}; "
                    f"valid: {sorted(defaults)}"
                )
            cfg.model[name] = _coerce(value, defaults[name], key)
        elif section in ("data", "optim", "train"):
            sub = getattr(cfg, section)
            _check_key(sub, name, section)
            setattr(sub, name, _coerce(value, getattr(sub, name), key))
        else:
            raise SteertimeError(f"unknown config section {section!r} in {pair!r}")
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SteertimeError(f"{path}: cannot read config ({e})") from None
    return TrainConfig.from_dict(d or {})
