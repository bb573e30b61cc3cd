"""Checkpoints: safetensors for tensors, JSON for everything else. Never pickles.

    RUN/checkpoints/last/  model.safetensors, train_state.safetensors, meta.json
    RUN/checkpoints/best/  model.safetensors, meta.json

Each checkpoint folder is built beside its target and renamed into place, so a kill at
any moment leaves the previous complete checkpoint.

Loading a trained model is not training: this module lives beside the models so that the
car-side code (`stream/`, `evaluate/`) can rebuild a run's model without importing
`train/`. `meta.json` is parsed in one place, `RunMeta.parse`; everything that uses a
run's model reads the typed record, never the JSON keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from steertime import __version__
from steertime.atomic import atomic_dir
from steertime.data.preprocess import FrameSpec
from steertime.errors import SteertimeError
from steertime.models.base import SequenceModel
from steertime.models.layout import OutputLayout
from steertime.models.registry import create_model


@dataclass(frozen=True)
class RunMeta:
    """What a checkpoint says about its model, parsed once from `meta.json`.

    - `model`, `model_config`: the registered name and the config it was built with;
    - `layout`: the outputs, their order, normalisation and units;
    - `frame`: the preprocessing (crop, size, colour) applied to every camera frame;
    - `source_size`: (height, width) of the raw camera frames the cache was prepared from;
    - `lead`: `data.lead`, how many frames later the targets were read (`lead_frames`);
    - `raw`: the dict as stored, for the training-only entries (position, optimizer).
    """

    model: str
    model_config: dict
    layout: OutputLayout
    frame: FrameSpec | None = None
    source_size: tuple[int, int] | None = None
    lead: int = 0
    epoch: int | None = None
    score: float | None = None
    data_hash: str | None = None
    data_path: str | None = None  # the cache it was trained on (render marks its splits)
    code_version: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, meta: dict, where: str = "checkpoint") -> RunMeta:
        """The record of a `meta.json` dict (as every version of steertime wrote it)."""
        if not isinstance(meta, dict):
            raise SteertimeError(f"{where}/meta.json: expected a JSON object")
        missing = [k for k in ("model", "model_config", "layout") if k not in meta]
        if missing:
            raise SteertimeError(f"{where}/meta.json: lacks {missing}")
        # A tampered or hand-edited meta.json must fail here, naming the key, not later
        # inside torch with a shape error.
        key = "layout"
        try:
            layout = OutputLayout.from_dict(meta["layout"])
            key = "model_config"
            model_config = dict(meta["model_config"])
            key = "frame"
            frame = FrameSpec.from_dict(meta["frame"]) if meta.get("frame") else None
            key = "source_size"
            size = meta.get("source_size")
            source_size = (int(size[0]), int(size[1])) if size else None
            key = "lead_frames"
            lead = int(meta.get("lead_frames", 0) or 0)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise SteertimeError(f"{where}/meta.json: key {key!r} is malformed ({e})") from None
        if source_size is not None and min(source_size) <= 0:
            raise SteertimeError(
                f"{where}/meta.json: key 'source_size' is {size}; a frame size must be positive"
            )
        bad = [
            f"{n} mean {m} std {sd}"
            for n, m, sd in zip(layout.names, layout.mean, layout.std, strict=True)
            if not (_finite(m) and _finite(sd) and float(sd) > 0)
        ]
        if bad:
            raise SteertimeError(
                f"{where}/meta.json: key 'layout' has a non-finite or non-positive "
                f"normalisation ({'; '.join(bad)}); this run cannot be used"
            )
        return cls(
            model=meta["model"],
            model_config=model_config,
            layout=layout,
            frame=frame,
            source_size=source_size,
            lead=lead,
            epoch=meta.get("epoch"),
            score=meta.get("score"),
            data_hash=meta.get("data_hash"),
            data_path=meta.get("data_path"),
            code_version=meta.get("code_version"),
            raw=dict(meta),
        )

    def require_frame(self) -> FrameSpec:
        if self.frame is None:
            raise SteertimeError(f"{self.model}: the checkpoint records no frame preprocessing")
        return self.frame

    # Read-only access to the stored keys, for scripts written against the JSON dict.
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [
        k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


class NonFiniteWeights(SteertimeError):
    """A model whose weights hold NaN/inf: never saved, never used."""


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def model_meta(model: SequenceModel, layout: OutputLayout, extra: dict) -> dict:
    return {
        "model": model.model_name,
        "model_config": dataclasses.asdict(model.config),
        "layout": layout.to_dict(),
        "code_version": __version__,
        **extra,
    }


def save_checkpoint(
    folder: Path,
    model: SequenceModel,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
    carried: dict[str, torch.Tensor] | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # A NaN model written as `best` or `last` would be served by predict/export as if it
    # were trained (and a resume would continue from it): refuse before anything is written.
    bad = nonfinite_tensors(weights)
    if bad:
        raise NonFiniteWeights(
            f"{folder}: not written, the weights hold NaN/inf ({', '.join(bad[:3])}"
            f"{' …' if len(bad) > 3 else ''}); the previous checkpoint is intact"
        )
    with atomic_dir(folder, overwrite=True) as tmp:
        save_file(weights, tmp / "model.safetensors")
        meta = dict(meta)
        if optimizer is not None:
            tensors, opt_meta = _flatten_optimizer(optimizer)
            tensors["rng.torch"] = torch.get_rng_state()
            for k, v in (carried or {}).items():
                tensors[f"carried.{k}"] = v.detach().cpu().contiguous()
            for k, v in (ema or {}).items():
                tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
            save_file(tensors, tmp / "train_state.safetensors")
            meta["optimizer"] = opt_meta
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def save_untrained_run(
    run: str | Path,
    name: str,
    layout: OutputLayout,
    frame: dict,
    source_size: tuple[int, int] | None = None,
    seed: int = 0,
    **model_cfg: Any,
) -> Path:
    """A run folder holding a freshly initialised model, as `train` would lay it out.

    For latency benchmarks, export checks and tests: everything that needs a loadable run
    but not trained weights. `frame` is the FrameSpec dict the predictor will apply."""
    torch.manual_seed(seed)
    model = create_model(
        name,
        n_outputs=layout.n_model_outputs,
        height=frame["height"],
        width=frame["width"],
        **model_cfg,
    )
    extra = {"frame": frame, "source_size": list(source_size) if source_size else None}
    run = Path(run)
    save_checkpoint(run / "checkpoints" / "best", model, model_meta(model, layout, extra))
    return run


def read_meta(folder: Path) -> dict:
    """The stored `meta.json` dict (training reads its position from it; models: `RunMeta`)."""
    f = Path(folder) / "meta.json"
    if not f.is_file():
        raise SteertimeError(f"{folder}: not a checkpoint (meta.json missing)")
    try:
        meta = json.loads(f.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SteertimeError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SteertimeError(f"{f}: expected a JSON object, got {type(meta).__name__}")
    return meta


def read_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, truncated or garbled file is one line."""
    if not path.is_file():
        raise SteertimeError(f"{path}: missing")
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise SteertimeError(f"{path}: cannot be read, truncated or corrupt ({e})") from None


def read_run_meta(folder: str | Path) -> RunMeta:
    """The typed record of a checkpoint folder (or a run folder: its best checkpoint)."""
    folder = _checkpoint_folder(folder)
    return RunMeta.parse(read_meta(folder), str(folder))


def _checkpoint_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if (folder / "checkpoints" / "best").is_dir():
        folder = folder / "checkpoints" / "best"
    return folder


def load_weights(folder: str | Path, model: nn.Module, device: str | torch.device = "cpu") -> None:
    """Load a checkpoint folder's weights into `model` (same architecture).

    Weights that do not fit the model (missing keys, wrong shapes) or hold NaN/inf are
    refused with one line naming the file: such a run must not predict or export."""
    path = Path(folder) / "model.safetensors"
    tensors = read_tensors(path, device)
    bad = nonfinite_tensors(tensors)
    if bad:
        raise NonFiniteWeights(
            f"{path}: the weights hold NaN/inf ({', '.join(bad[:3])}"
            f"{' …' if len(bad) > 3 else ''}); this run diverged and cannot be used"
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise SteertimeError(f"{path}: does not fit the model in meta.json ({detail})") from None


def load_model(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[SequenceModel, RunMeta]:
    """Rebuild a model from a checkpoint folder (or a run folder: its best checkpoint),
    ready for inference: in eval mode, so dropout is off (a module starts in train mode,
    and `evaluate` once scored dropout models with their dropout on)."""
    folder = _checkpoint_folder(folder)
    meta = RunMeta.parse(read_meta(folder), str(folder))
    try:
        model = create_model(meta.model, **meta.model_config)
    except TypeError as e:
        raise SteertimeError(f"{folder}/meta.json: key 'model_config' is malformed ({e})") from None
    load_weights(folder, model, device)
    return model.to(device).eval(), meta


def load_train_state(
    folder: Path, optimizer: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = read_meta(folder)
    tensors = read_tensors(folder / "train_state.safetensors")
    _restore_optimizer(optimizer, tensors, meta["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    carried = {k[len("carried.") :]: v for k, v in tensors.items() if k.startswith("carried.")}
    return meta, carried


def load_ema(folder: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The averaged weights a resumable checkpoint holds (empty without `optim.ema`)."""
    tensors = read_tensors(Path(folder) / "train_state.safetensors", device)
    return {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
