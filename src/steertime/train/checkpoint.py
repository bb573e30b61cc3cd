"""Checkpoints: safetensors for tensors, JSON for everything else. Never pickles.

    RUN/checkpoints/last/  model.safetensors, train_state.safetensors, meta.json
    RUN/checkpoints/best/  model.safetensors, meta.json

Each checkpoint folder is built beside its target and renamed into place, so a kill at
any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from steertime import __version__
from steertime.atomic import atomic_dir
from steertime.errors import SteertimeError
from steertime.models import OutputLayout, SequenceModel, create_model


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
    import dataclasses

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
    with atomic_dir(folder, overwrite=True) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
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
        name, n_outputs=len(layout.names), height=frame["height"], width=frame["width"], **model_cfg
    )
    extra = {"frame": frame, "source_size": list(source_size) if source_size else None}
    run = Path(run)
    save_checkpoint(run / "checkpoints" / "best", model, model_meta(model, layout, extra))
    return run


def read_meta(folder: Path) -> dict:
    f = Path(folder) / "meta.json"
    if not f.is_file():
        raise SteertimeError(f"{folder}: not a checkpoint (meta.json missing)")
    return json.loads(f.read_text())


def load_model(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[SequenceModel, dict]:
    """Rebuild a model from a checkpoint folder (or a run folder: its best checkpoint)."""
    folder = Path(folder)
    if (folder / "checkpoints" / "best").is_dir():
        folder = folder / "checkpoints" / "best"
    meta = read_meta(folder)
    cfg = meta["model_config"]
    model = create_model(meta["model"], **cfg)
    model.load_state_dict(load_file(folder / "model.safetensors", device=str(device)))
    return model.to(device), meta


def load_train_state(
    folder: Path, optimizer: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = read_meta(folder)
    tensors = load_file(folder / "train_state.safetensors")
    _restore_optimizer(optimizer, tensors, meta["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    carried = {k[len("carried.") :]: v for k, v in tensors.items() if k.startswith("carried.")}
    return meta, carried


def load_ema(folder: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The averaged weights a resumable checkpoint holds (empty without `optim.ema`)."""
    tensors = load_file(Path(folder) / "train_state.safetensors", device=str(device))
    return {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
