"""Training configuration: dataclasses with defaults, dotted overrides, full config saved.

cfg = TrainConfig()                                  # every default
cfg = apply_overrides(cfg, ["optim.lr=3e-4", "model.hidden=128"])   # unknown keys fail
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steertime.errors import SteertimeError
from steertime.heap import HEAPS
from steertime.train.track import SPLITS as TRACK_SPLITS


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
    # ± fraction of contrast and of saturation, half of it per colour channel (white
    # balance), drawn per sequence: lighting that differs from the recorded room. 0: off.
    color: float = 0.0
    # Longest horizontal motion blur in pixels: each sequence's frames are smeared over k
    # pixels, k drawn in [1, blur] — a camera that turns faster or exposes longer. 0: off.
    blur: int = 0
    # ± pixels: each sequence's frames move by one random (dy, dx), edges repeated — a
    # small-data regulariser for pixel models (DrQ's random shift), one per sequence so
    # the motion between frames is untouched. 0: off.
    shift: int = 0
    # Steering added per pixel the frames moved right (native units, e.g. 0.0065 on a
    # Donkeycar tub at 120x160): a horizontal shift is the camera yawed, so the label is
    # corrected as NVIDIA's shifted views were, and clipped to the logged range. 0: the
    # label is left as logged. Needs data.shift and a steering output.
    shift_steer: float = 0.0
    # Sequence mixup: each run of chunks that share a state is blended, frames and
    # targets alike, with another lane's, weight max(l, 1-l) for l ~ Beta(mixup, mixup)
    # on its own, so a lane stays mostly itself and its state carries on. 0: off.
    mixup: float = 0.0
    # Frame steps a segment may be played at in an epoch, one drawn per segment: [1, 2]
    # trains on the log's rate and on every second frame, so the memory also knows the
    # motion of half the rate (a car whose computer falls behind its camera). [1]: off.
    strides: list[int] = field(default_factory=lambda: [1])
    # Train frame t on the log at t + lead (frames): undoes the demonstrator's reaction
    # delay, which a model otherwise learns to copy (see docs/training.md).
    lead: int = 0
    # Train on the centred mean of 2k+1 log values (k frames each side) instead of the
    # raw label: tap-like steering jumps between frames by more than any camera shows.
    # Validation and evaluation keep the raw label. 0: off.
    smooth: int = 0
    # Distillation (train/teacher.py): trained runs streamed over the training split once;
    # each target becomes (1 - teacher_weight) * label + teacher_weight * their average
    # prediction. Validation keeps the raw label. Empty: off. Weight 1 (the teachers alone)
    # validated best on the tub's nested folds (0.985x the plain recipe; 0.5: 0.992x).
    teacher: list[str] = field(default_factory=list)
    teacher_weight: float = 1.0
    # Weight each training frame's loss by how rare its steering is (the steering output;
    # the first output without one): (share of training frames in its angle bin)^-balance
    # over 21 bins, at most 10x the commonest bin's weight, a mean of 1 over the training
    # frames — the usual answer to a log of mostly straight driving. 1: every bin counts
    # alike. Validation is never weighted. 0: off.
    balance: float = 0.0
    # Clip every physical output to the range its training labels took (steering cannot
    # exceed full lock): a free gain where a model overshoots a tap, never a loss.
    clip_outputs: bool = True
    # Camera faults drawn over training sequences, `KIND:LENGTH_S@EVERY_S,...` (see
    # steertime.data.faults), e.g. "blackout:0.5@5,drop:0.3@10"; empty: none.
    faults: str = ""


# Data settings that change the pixels: a features store holds none, so they need frames
# (a run over features refuses them; a probe leaves them to its fine-tune).
FRAME_ONLY = ("brightness", "color", "blur", "faults", "shift", "shift_steer")


def frame_only_set(d: DataConfig) -> list[str]:
    """The `FRAME_ONLY` keys `d` sets (differ from their defaults)."""
    default = DataConfig()
    return [f"data.{k}" for k in FRAME_ONLY if getattr(d, k) != getattr(default, k)]


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
    # Sharpness-aware minimisation (Foret et al. 2021): each step's gradient is taken at
    # the weights moved this far (L2) uphill, so the step favours flat minima, which are
    # said to tolerate label noise; two forward/backward passes a step. 0: off.
    sam: float = 0.0


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
    # bf16: the encoder's forward and backward in bfloat16 (torch.autocast; weights, memory,
    # head and loss stay float32; validation and inference run float32). Faster on CPUs
    # with AMX or AVX512-BF16 and on recent GPUs; slower on CPUs without them.
    precision: str = "fp32"
    # keep: glibc keeps freed blocks for reuse instead of handing each large activation
    # back to the kernel and faulting it in again next step (steertime/heap.py; 1.3x faster
    # steps at 120x160 on a CPU). system: malloc as it comes.
    heap: str = "keep"
    # Start from a run's best weights: every tensor whose name and shape match (all of
    # them for the same model; the encoder from a `pilotnet` run into a `cnn_lstm`).
    init_from: str = ""
    freeze: str = ""  # comma-separated modules not trained, e.g. "encoder"
    # Linear probe, then fine-tune (LP-FT, Kumar et al. 2022; train/probe.py): for a
    # pretrained encoder that the run fine-tunes (`encoder_cfg.finetune_blocks`), first
    # train the rest of the model for this many epochs over the frozen encoder's features
    # (extracted once into OUT/probe_features) at `probe_lr`, stopping after
    # `probe_patience` epochs without progress; the fine-tune starts from its best
    # weights, so a random head never sends large gradients into ImageNet's (with
    # `init_from`, the probe starts from that run). 0: off.
    probe_epochs: int = 0
    probe_lr: float = 1e-3
    probe_patience: int = 8
    diagnostics: bool = False  # per-layer grad norms, update ratios, saturation → TensorBoard
    # Predict a spread per output too (Gaussian negative log-likelihood; calibrated on val):
    # `predict` gives `<name>_std`, `evaluate` the 90% interval's coverage.
    spread: bool = False
    # A categorical head (0: regression): each output is this many classes over its
    # training range, trained with a histogram cross-entropy (a Gaussian of 0.75 bin
    # widths around the label, "HL-Gauss"); the output is the softmax expectation.
    bins: int = 0
    # Average the weights of this many best-validated epochs at the end (a "soup", see
    # train/soup.py); kept as the model only if it validates better than the best epoch.
    # 0 or 1: off. Default 5: chosen on validation inside the tub's training records.
    soup: int = 5
    # A second prepared cache scored after every epoch and logged (`track_rmse_*` beside
    # `elapsed_s` in metrics.csv), never used to choose: time to a target accuracy on
    # frames the run never sees (train/track.py). `track_split`: which of its splits.
    track: str = ""
    track_split: str = "all"
    # Auxiliary targets, training only: a linear head on each frame's encoder features
    # also predicts every output this many frames later (e.g. [10, 20]), so the encoder
    # must read where the road goes, not only where the car is. The head is never run at
    # inference or exported. Its share of the loss: `aux_weight`.
    aux_leads: list[int] = field(default_factory=list)
    aux_weight: float = 0.5
    # Reconstruction, training only: a linear head on each frame's encoder features
    # redraws a coarse grey thumbnail of the frame (`recon_grid` rows x columns, each
    # thumbnail standardised), its MSE weighted `recon_weight` — the encoder must keep
    # what the view shows, not only what fits a few thousand labels (SAC+AE, Yarats et
    # al. 2021). Never run at inference or exported. 0: off.
    recon_weight: float = 0.0
    recon_grid: list[int] = field(default_factory=lambda: [12, 16])
    # > 0: the head reads the memory's output at step t and redraws the frame `recon_lead`
    # steps later, so the memory itself must carry where the view is going (a world
    # model's next-frame target, coarse). 0: frame t from its own features.
    recon_lead: int = 0


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"name": "cnn_lstm"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    out: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Refuse every value that cannot train, naming the key: called before any data is
        opened or anything written, so a bad value costs nothing and leaves nothing."""
        validate(self)
        return self

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
            if d.get(section) is not None:
                if not isinstance(d[section], dict):
                    raise SteertimeError(f"config section {section!r} must be a mapping")
                sub = getattr(cfg, section)
                for k, v in d[section].items():
                    _check_key(sub, k, section)
                    setattr(sub, k, _typed(v, _hints(sub)[k], f"{section}.{k}"))
        if "model" in d:
            if not isinstance(d["model"], dict) or not isinstance(d["model"].get("name"), str):
                raise SteertimeError("config section 'model' must be a mapping with a name")
            cfg.model = _typed_model(dict(d["model"]))
        if "out" in d:
            cfg.out = _typed(d["out"] or "", str, "out")
        return cfg


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _typed(value: Any, hint: Any, key: str) -> Any:
    """`value` (from YAML or JSON) as the type `hint` declares, or a one-line error.

    YAML 1.1 reads `1e-3` as a string (it wants `1.0e-3`): numbers written as strings
    are converted, so a config means what it looks like; anything else of the wrong type
    is refused here rather than crashing deep in training."""
    origin = typing.get_origin(hint)
    if origin is list:
        (elem,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [s for s in value.split(",") if s.strip()]
        if not isinstance(value, list | tuple):
            raise SteertimeError(f"{key}: expected a list, got {value!r}")
        return [_typed(v, elem, key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _coerce(value, False, key)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return _coerce(value.strip(), 0, key)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return _coerce(value.strip(), 0.0, key)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise SteertimeError(f"{key}: expected a {name}, got {value!r}")


def resolved_model(model: dict) -> Any:
    """The model config a `model` section builds (registered defaults + its overrides)."""
    from steertime.models import model_config

    kw = {k: v for k, v in _typed_model(model).items() if k != "name"}
    return model_config(model["name"], **kw)


def _typed_model(model: dict) -> dict:
    """The model section with each value checked against the model's config types."""
    from steertime.models import model_config

    cfg = model_config(model["name"])
    hints = _hints(cfg)
    out = {"name": model["name"]}
    for k, v in model.items():
        if k == "name":
            continue
        if k not in hints:
            raise SteertimeError(
                f"unknown config key model.{k} for {model['name']}; valid: {sorted(hints)}"
            )
        out[k] = _typed(v, hints[k], f"model.{k}")
    return out


SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam", "sgd")
MODES = ("stateful", "windows")
PRECISIONS = ("fp32", "bf16")


def validate(cfg: TrainConfig) -> None:
    """Every value range a training needs, checked up front (see `TrainConfig.validate`)."""
    o, t, d = cfg.optim, cfg.train, cfg.data

    def need(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            raise SteertimeError(f"{key} must be {rule}, got {value!r}")

    def finite(x: Any) -> bool:
        return isinstance(x, int | float) and math.isfinite(x)

    need(finite(o.lr) and o.lr > 0, "optim.lr", o.lr, "a finite number > 0")
    need(o.name in OPTIMIZERS, "optim.name", o.name, " or ".join(OPTIMIZERS))
    need(o.schedule in SCHEDULES, "optim.schedule", o.schedule, " or ".join(SCHEDULES))
    need(finite(o.clip_norm) and o.clip_norm >= 0, "optim.clip_norm", o.clip_norm, ">= 0")
    need(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, ">= 0")
    need(finite(o.momentum) and o.momentum >= 0, "optim.momentum", o.momentum, ">= 0")
    need(
        finite(o.weight_decay) and o.weight_decay >= 0,
        "optim.weight_decay",
        o.weight_decay,
        ">= 0",
    )
    need(finite(o.ema) and 0 <= o.ema < 1, "optim.ema", o.ema, "in [0, 1)")
    need(finite(o.sam) and o.sam >= 0, "optim.sam", o.sam, "a finite number >= 0")
    need(t.mode in MODES, "train.mode", t.mode, " or ".join(MODES))
    need(t.device in DEVICES, "train.device", t.device, " or ".join(DEVICES))
    need(t.precision in PRECISIONS, "train.precision", t.precision, " or ".join(PRECISIONS))
    need(t.heap in HEAPS, "train.heap", t.heap, " or ".join(HEAPS))
    splits = " or ".join(TRACK_SPLITS)
    need(t.track_split in TRACK_SPLITS, "train.track_split", t.track_split, splits)
    for key in ("seq_len", "batch_size", "epochs", "checkpoint_every", "patience"):
        v = getattr(t, key)
        need(v > 0, f"train.{key}", v, "> 0")
    for key in ("burn_in", "max_steps", "threads", "seed", "soup"):
        v = getattr(t, key)
        need(v >= 0, f"train.{key}", v, ">= 0")
    need(finite(t.ar_lambda) and t.ar_lambda >= 0, "train.ar_lambda", t.ar_lambda, ">= 0")
    need(all(k > 0 for k in t.aux_leads), "train.aux_leads", t.aux_leads, "frames > 0")
    need(
        len(set(t.aux_leads)) == len(t.aux_leads), "train.aux_leads", t.aux_leads, "without repeats"
    )
    need(finite(t.aux_weight) and t.aux_weight >= 0, "train.aux_weight", t.aux_weight, ">= 0")
    need(
        finite(t.recon_weight) and t.recon_weight >= 0,
        "train.recon_weight",
        t.recon_weight,
        ">= 0",
    )
    need(
        len(t.recon_grid) == 2 and all(type(n) is int and 1 <= n <= 64 for n in t.recon_grid),
        "train.recon_grid",
        t.recon_grid,
        "[rows, columns], each in 1..64",
    )
    need(
        0 <= t.recon_lead < t.seq_len,
        "train.recon_lead",
        t.recon_lead,
        f"in 0..{t.seq_len - 1} (a later frame of the same train.seq_len={t.seq_len} chunk)",
    )
    need(
        not (t.recon_lead and not t.recon_weight),
        "train.recon_lead",
        t.recon_lead,
        "0 without train.recon_weight (it says which frame the reconstruction redraws)",
    )
    need(
        not (t.recon_weight and d.features),
        "train.recon_weight",
        t.recon_weight,
        "0 over a features store (it redraws frames, and the store has none)",
    )
    need(
        not (t.aux_leads and t.bins),
        "train.aux_leads",
        t.aux_leads,
        "empty with train.bins (the auxiliary head regresses)",
    )
    need(bool(d.outputs), "data.outputs", d.outputs, "at least one signal")
    need(len(set(d.outputs)) == len(d.outputs), "data.outputs", d.outputs, "without repeats")
    if d.weights:
        need(
            len(d.weights) == len(d.outputs),
            "data.weights",
            d.weights,
            f"one weight per output ({len(d.outputs)}: {','.join(d.outputs)})",
        )
        need(
            all(finite(w) and w >= 0 for w in d.weights) and sum(d.weights) > 0,
            "data.weights",
            d.weights,
            "finite, >= 0, not all 0",
        )
    need(
        finite(d.brightness) and 0 <= d.brightness < 1,
        "data.brightness",
        d.brightness,
        "in [0, 1)",
    )
    need(finite(d.color) and 0 <= d.color < 1, "data.color", d.color, "in [0, 1)")
    need(0 <= d.blur <= 32, "data.blur", d.blur, "in [0, 32] pixels")
    need(finite(d.mixup) and 0 <= d.mixup <= 10, "data.mixup", d.mixup, "in [0, 10]")
    need(d.lead >= 0, "data.lead", d.lead, ">= 0 frames")
    need(d.smooth >= 0, "data.smooth", d.smooth, ">= 0 frames")
    need(
        finite(d.teacher_weight) and 0 <= d.teacher_weight <= 1,
        "data.teacher_weight",
        d.teacher_weight,
        "in [0, 1]",
    )
    need(0 <= d.shift <= 32, "data.shift", d.shift, "in [0, 32] pixels")
    need(
        finite(d.shift_steer) and abs(d.shift_steer) <= 0.5,
        "data.shift_steer",
        d.shift_steer,
        "in [-0.5, 0.5] steering units per pixel",
    )
    need(
        not d.shift_steer or (d.shift > 0 and "steering" in d.outputs),
        "data.shift_steer",
        d.shift_steer,
        "used with data.shift > 0 and a steering output",
    )
    need(finite(d.balance) and 0 <= d.balance <= 2, "data.balance", d.balance, "in [0, 2]")
    need(
        bool(d.strides) and all(type(k) is int and 1 <= k <= 16 for k in d.strides),
        "data.strides",
        d.strides,
        "frame steps in 1..16, e.g. 1,2",
    )
    if d.faults:
        from steertime.data.faults import parse_faults

        try:
            parse_faults(d.faults)
        except SteertimeError as e:
            raise SteertimeError(f"config key data.faults: {e}") from None
    _validate_model(cfg.model, need)
    need(finite(t.probe_lr) and t.probe_lr > 0, "train.probe_lr", t.probe_lr, "a finite number > 0")
    need(t.probe_patience > 0, "train.probe_patience", t.probe_patience, "> 0")
    if t.probe_epochs:
        _validate_probe(cfg, need)
    if t.aux_leads or t.recon_weight:  # training-only heads: the cnn_* models have them
        from steertime.models import model_config

        name = cfg.model["name"]
        fields = {f.name for f in dataclasses.fields(model_config(name))}
        for key, value, field_, off, head in (
            ("train.aux_leads", t.aux_leads, "aux_outputs", "empty", "auxiliary"),
            ("train.recon_weight", t.recon_weight, "recon_outputs", "0", "reconstruction"),
        ):
            need(
                not value or field_ in fields,
                key,
                value,
                f"{off} for {name}, which has no {head} head (use a cnn_* model)",
            )
        if t.recon_lead and "recon_outputs" in fields:
            need(
                not resolved_model(cfg.model).autoregressive,
                "train.recon_lead",
                t.recon_lead,
                f"0 for {name}, which feeds its outputs back (its memory runs step by step)",
            )


def _validate_model(model: dict, need: Any) -> None:
    m = dataclasses.asdict(resolved_model(model))
    for key, v in m.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if key in ("dropout", "conv_dropout", "weight_drop"):
            need(math.isfinite(v) and 0 <= v < 1, f"model.{key}", v, "in [0, 1)")
        elif key in ("hidden", "head_hidden", "feat_dim", "layers"):
            need(v > 0, f"model.{key}", v, "> 0")


def _validate_probe(cfg: TrainConfig, need: Any) -> None:
    from steertime.models.registry import RANDOM_INIT, encoder_provenance

    t, key = cfg.train, "train.probe_epochs"
    need(t.probe_epochs > 0, key, t.probe_epochs, ">= 0")
    need(
        not cfg.data.features,
        key,
        t.probe_epochs,
        "0 with data.features: the fine-tune reads frames (the probe extracts its own features)",
    )
    m = resolved_model(cfg.model)
    encoder = getattr(m, "encoder", None)
    need(
        encoder is not None and encoder_provenance(encoder) != RANDOM_INIT,
        key,
        t.probe_epochs,
        f"0 for {cfg.model['name']}: its encoder ({encoder}) is not pretrained, so its frozen "
        "features say nothing (use feat_lstm or lite_lstm)",
    )
    need(
        getattr(m, "encoder_cfg", {}).get("finetune_blocks", 0) > 0,
        key,
        t.probe_epochs,
        "0 when nothing is fine-tuned after it: set model.encoder_cfg's finetune_blocks, or "
        "train over a features store (steertime features) instead",
    )


def _check_key(obj: Any, key: str, section: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    if key not in names:
        raise SteertimeError(f"unknown config key {section}.{key}; valid: {sorted(names)}")


def _like(obj: Any, name: str) -> Any:
    """A value of the type field `name` declares (an empty list says nothing of its items:
    `data.weights=1,2` must give floats, not strings)."""
    value = getattr(obj, name)
    hint = _hints(obj)[name]
    if typing.get_origin(hint) is list and not value:
        (elem,) = typing.get_args(hint)
        return [elem()]
    return value


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
            setattr(sub, name, _coerce(value, _like(sub, name), key))
        else:
            raise SteertimeError(f"unknown config section {section!r} in {pair!r}")
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SteertimeError(f"{path}: cannot read config ({e})") from None
    if d is not None and not isinstance(d, dict):
        raise SteertimeError(f"{path}: a config must be a mapping of sections")
    try:
        return TrainConfig.from_dict(d or {})
    except SteertimeError as e:
        raise SteertimeError(f"{path}: {e}") from None
