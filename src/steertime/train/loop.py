"""The training loop, top to bottom: stateful truncated BPTT (or windows) with clipping.

    steertime train --data CACHE --model cnn_lstm --seq-len 10 --out runs/x
    torchrun --nproc-per-node 2 -m steertime train ...      # same script, DDP

Each step reads one chunk per lane (B, T frames), resets the state of lanes that enter a
new drive segment, runs the CNN once per frame and the recurrent core over the chunk,
backpropagates through the chunk only (the carried state is detached), clips the global
gradient norm and steps the optimiser. Validation runs the model streaming over whole
val segments; the best val steering RMSE keeps `checkpoints/best`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from steertime.atomic import write_json, write_text
from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.models import OutputLayout, SequenceModel, State, create_model, detach_state
from steertime.train import dist as D
from steertime.train.batches import Augment, BatchReader, stateful_schedule, window_schedule
from steertime.train.checkpoint import load_ema, load_train_state, model_meta, save_checkpoint
from steertime.train.config import TrainConfig, load_config
from steertime.train.ema import WeightEMA
from steertime.train.validate import stream_metrics


class TrainingDiverged(SteertimeError):
    pass


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
    ):
        super().__init__()
        self.model, self.steer, self.lam, self.skip = model, steer, lam, skip
        self.features = features
        self.register_buffer("w", torch.tensor(weights) / sum(weights))

    def _mse(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (B, T, K): weighted mean over outputs of the per-output MSE, burn-in excluded
        return ((y - t)[:, self.skip :].square().mean(dim=(0, 1)) * self.w).sum()

    def forward(self, frames: torch.Tensor, target: torch.Tensor, state: State):
        if self.features:  # precomputed encoder outputs: the CNN does not run
            feats = self.model.encode_features(frames)  # (B, T, E) -> (B, T, F)
        else:
            feats, state = self.model.encode(frames, state)  # (B, T, F), once per frame
        if not self.model.autoregressive:
            y, state = self.model.core(feats, state)
            return self._mse(y, target), state
        # Komanda: own-prediction steering + λ·(teacher-forced and own, all outputs)
        y_own, new_state = self.model.core(feats, state)
        y_tf, _ = self.model.core(feats, state, teacher=target)
        s = self.steer
        own_steer = (y_own - target)[:, self.skip :, s].square().mean()
        loss = own_steer + self.lam * (self._mse(y_tf, target) + self._mse(y_own, target))
        return loss, new_state


def fit_layout(cache: Cache, outputs: list[str], weights: list[float]) -> OutputLayout:
    """Mean/std of each output over the training split (never val or test)."""
    missing = [n for n in outputs if n not in cache.signal_names()]
    if missing:
        raise SteertimeError(
            f"outputs {missing} are not signals of every drive in {cache.path} "
            f"(available: {cache.signal_names()})"
        )
    segs = cache.segments("train")
    if not segs:
        raise SteertimeError(f"{cache.path}: the train split is empty")
    vals = {
        n: np.concatenate([cache.drives[s.drive].signals[n][s.start : s.stop] for s in segs])
        for n in outputs
    }
    units = [cache.drives[0].units[n].to_dict() for n in outputs]
    return OutputLayout(
        names=list(outputs),
        mean=[float(vals[n].mean()) for n in outputs],
        std=[max(float(vals[n].std()), 1e-6) for n in outputs],
        units=units,
        weights=list(weights) if weights else [1.0] * len(outputs),
    )


def lr_at(step: int, total: int, cfg) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise SteertimeError(f"optim.name must be adam or sgd, got {cfg.name!r}")


def _append_metrics(run: Path, row: dict, keep_epochs_below: int | None = None) -> None:
    """Rewrite metrics.csv atomically (rows of epochs >= keep_epochs_below are dropped)."""
    f = run / "metrics.csv"
    rows = list(csv.DictReader(f.open())) if f.is_file() else []
    if keep_epochs_below is not None:
        rows = [r for r in rows if int(r["epoch"]) < keep_epochs_below]
    if row:
        rows.append(row)
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(rows)
    write_text(f, buf.getvalue())


def _check_lead_within_guard(lead: int, cache: Cache) -> None:
    """A training frame's target is read `lead` frames later; past a split boundary's
    guard gap that would be a validation or test label."""
    split = cache.manifest["splits"]["config"]
    if split.get("mode") != "drive" and lead > split.get("guard", 0):
        flags = [f"--mode {split.get('mode')}"]
        flags += [f"--test-session {sid}" for sid in split.get("test_sessions", [])]
        flags += [f"--val-session {sid}" for sid in split.get("val_sessions", [])]
        raise SteertimeError(
            f"data.lead={lead} reads labels {lead} frames ahead, beyond the {split.get('guard')}"
            f"-frame guard between the splits of {cache.path}: training would see "
            f"validation/test labels. Re-split with a larger guard: steertime split "
            f"{cache.path} {' '.join(flags)} --guard {lead}"
        )


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train a model; returns the run folder. With `resume`, continue `cfg.out`'s run.

    `on_epoch(epoch, metrics)` is called after each validation (metrics include `score`,
    the value early stopping uses); it may raise to stop the run (e.g. Optuna pruning).
    """
    run = Path(cfg.out)
    last_dir, best_dir = run / "checkpoints" / "last", run / "checkpoints" / "best"
    if resume:
        if not last_dir.is_dir():
            raise SteertimeError(f"{run}: nothing to resume (no checkpoints/last)")
        cfg = load_config(run / "config.yaml")
    elif (run / "config.yaml").exists():
        raise SteertimeError(f"{run} already holds a run; use --resume, or another --out")
    t = cfg.train
    info = D.setup(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.batch_size % info.world:
        raise SteertimeError(
            f"train.batch_size {t.batch_size} must divide by {info.world} processes"
        )
    rows = t.batch_size // info.world
    augment = Augment(cfg.data.flip, cfg.data.brightness)
    if not 0 <= augment.brightness < 1:
        raise SteertimeError(f"data.brightness must be in [0, 1), got {augment.brightness}")
    if cfg.data.lead < 0:
        raise SteertimeError(f"data.lead must be >= 0 frames, got {cfg.data.lead}")
    if augment.active and cfg.data.features:
        raise SteertimeError("data.flip / data.brightness need frames, not a features store")

    cache = Cache.open(cfg.data.cache)
    _check_lead_within_guard(cfg.data.lead, cache)
    layout = fit_layout(cache, cfg.data.outputs, cfg.data.weights)
    val_segs = cache.segments("val")
    torch.manual_seed(t.seed)
    spec = {k: v for k, v in cfg.model.items() if k != "name"}
    spec.update(n_outputs=layout.k, height=cache.frame.height, width=cache.frame.width)
    model = create_model(cfg.model["name"], **spec).to(info.device)
    steer = layout.index("steering") if "steering" in layout.names else 0
    skip = t.burn_in if t.mode == "windows" else 0
    store = None
    if cfg.data.features:
        import dataclasses

        from steertime.data.features import FeatureStore

        store = FeatureStore(cfg.data.features)
        if not hasattr(model, "encode_features") or getattr(model, "k", 1) > 1:
            raise SteertimeError(f"{cfg.model['name']} cannot train over cached features")
        store.check(model.cfg.encoder, dataclasses.asdict(model.encoder.cfg), cache)
    if t.init_from:
        from steertime.train.checkpoint import load_model as _load

        model.load_state_dict(_load(t.init_from)[0].state_dict())
    step_loss = StepLoss(model, layout.weights, steer, t.ar_lambda, skip, store is not None)
    step_loss = step_loss.to(info.device)
    ddp = DistributedDataParallel(step_loss) if info.enabled else step_loss
    opt = make_optimizer(model, cfg.optim)
    meta_extra = {
        "frame": cache.frame.to_dict(),
        "source_size": cache.manifest["drives"][0].get("source_size"),
        "data_hash": cache.content_hash,
        "data_path": str(cache.path),
        "lead_frames": cfg.data.lead,
    }

    def schedule(epoch: int):
        segs = cache.segments("train")
        if t.mode == "stateful":
            return stateful_schedule(segs, t.seq_len, t.batch_size, t.seed, epoch, augment)
        if t.mode == "windows":
            return window_schedule(
                segs, t.burn_in + t.seq_len, t.seq_len, t.batch_size, t.seed, epoch, augment
            )
        raise SteertimeError(f"train.mode must be stateful or windows, got {t.mode!r}")

    steps_per_epoch = len(schedule(0))
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    length = t.seq_len + skip
    reader = BatchReader(cache, layout.names, length, rows, store, cfg.data.lead)
    carried = model.init_state(rows, info.device)
    pos = {
        "epoch": 0,
        "step": 0,
        "global_step": 0,
        "best": math.inf,
        "bad_epochs": 0,
        "loss_sum": 0.0,
        "loss_n": 0,
        "done": False,
    }
    if resume:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(last_dir / "model.safetensors", device=str(info.device)))
        meta, full = load_train_state(last_dir, opt)
        pos = meta["position"]
        carried = {
            k: v[info.rank :: info.world].to(info.device) for k, v in full.items()
        } or carried
        if info.is_main:
            _append_metrics(run, {}, keep_epochs_below=pos["epoch"])
    elif info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        import yaml

        write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        write_json(run / "layout.json", layout.to_dict())

    ema = WeightEMA(model, cfg.optim.ema, pos.get("ema_n", 0)) if cfg.optim.ema else None
    if ema is not None and resume:
        ema.shadow.update(load_ema(last_dir, info.device))

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))

    def checkpoint() -> None:
        full = {k: D.gather_rows(v, info) for k, v in carried.items()}
        if info.is_main:
            if ema is not None:
                pos["ema_n"] = ema.n
            meta = model_meta(model, layout, {**meta_extra, "position": pos})
            save_checkpoint(last_dir, model, meta, opt, full, ema.shadow if ema else None)

    from tqdm import tqdm

    from steertime.train.monitor import TrainingMonitor

    params = [p for p in model.parameters() if p.requires_grad]
    clip = cfg.optim.clip_norm if cfg.optim.clip_norm > 0 else math.inf
    monitor = TrainingMonitor(model, writer, clip, t.diagnostics and info.is_main)
    while pos["epoch"] < t.epochs and not pos["done"]:
        epoch = pos["epoch"]
        steps = schedule(epoch)
        mine = [[row[b] for b in range(info.rank, t.batch_size, info.world)] for row in steps]
        frames_per_step = t.batch_size * t.seq_len
        bar = tqdm(
            total=len(steps) * frames_per_step,
            initial=pos["step"] * frames_per_step,
            unit="fr",
            unit_scale=True,
            desc=f"epoch {epoch}",
            disable=not (progress and info.is_main),
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        n_done = 0
        for i in range(pos["step"], len(steps)):
            frames, target, reset = reader.read(mine[i])
            x = torch.from_numpy(frames).to(info.device)  # (B, T, H, W, 3) uint8 or (B, T, E)
            y = layout.normalize(torch.from_numpy(target).to(info.device))  # (B, T, K)
            if t.mode == "stateful":
                state = model.reset_rows(carried, torch.from_numpy(reset).to(info.device))
            else:
                state = model.init_state(rows, info.device)
            lr = lr_at(pos["global_step"], total_steps, cfg.optim)
            for g in opt.param_groups:
                g["lr"] = lr
            loss, new_state = ddp(x, y, state)
            if not torch.isfinite(loss):
                where = ", ".join(f"{cache.drives[c.drive].name}@{c.start}" for c in mine[i][:4])
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch} step {i} (global step "
                    f"{pos['global_step']}; batch chunks {where} …). Weights were not updated "
                    f"and the last checkpoint is intact. Try a lower optim.lr (now {lr:.3g}), "
                    f"keep optim.clip_norm on (now {cfg.optim.clip_norm}), or check the data."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
            if not torch.isfinite(gnorm):
                raise TrainingDiverged(
                    f"gradient norm is {gnorm.item()} at epoch {epoch} step {i}; weights were "
                    f"not updated. Lower optim.lr (now {lr:.3g}) or set optim.clip_norm."
                )
            monitor.after_backward(pos["global_step"], float(gnorm), lr)
            opt.step()
            if ema is not None:
                ema.update(model)
            monitor.after_step(pos["global_step"], loss.item())
            carried = detach_state(new_state)
            pos["global_step"] += 1
            pos["step"] = i + 1
            pos["loss_sum"] += loss.item()
            pos["loss_n"] += 1
            n_done += 1
            bar.update(frames_per_step)
            bar.set_postfix(loss=f"{pos['loss_sum'] / pos['loss_n']:.4f}", lr=f"{lr:.2g}")
            if writer and pos["global_step"] % 10 == 0:
                writer.add_scalar("train/loss", loss.item(), pos["global_step"])
                writer.add_scalar("train/grad_norm", float(gnorm), pos["global_step"])
                writer.add_scalar("train/lr", lr, pos["global_step"])
            if t.max_steps and pos["global_step"] >= t.max_steps:
                pos["done"] = True
                break
            if pos["global_step"] % t.checkpoint_every == 0:
                checkpoint()
        bar.close()
        elapsed = time.perf_counter() - started

        # --- end of epoch (or of max_steps): validate, keep the best, maybe stop ---------
        # The model that is validated and kept: the weights' average when optim.ema is on.
        kept = ema.applied(model) if ema is not None else contextlib.nullcontext(model)
        with kept:
            metrics = {}
            if info.is_main and val_segs:
                metrics = stream_metrics(
                    model, cache, val_segs, layout, info.device, store, cfg.data.lead
                )
            metrics = D.broadcast(metrics, info)
            key = "rmse_steering" if "rmse_steering" in metrics else next(iter(metrics), None)
            score = metrics.get(key, pos["loss_sum"] / max(1, pos["loss_n"]))
            improved = score < pos["best"]
            if info.is_main and improved:
                meta = model_meta(
                    model, layout, {**meta_extra, "epoch": epoch, "val": metrics, "score": score}
                )
                save_checkpoint(best_dir, model, meta)
        if improved:
            pos["best"], pos["best_epoch"], pos["bad_epochs"] = score, epoch, 0
        else:
            pos["bad_epochs"] += 1
        row = {
            "epoch": epoch,
            "global_step": pos["global_step"],
            "train_loss": pos["loss_sum"] / max(1, pos["loss_n"]),
            **{f"val_{k}": v for k, v in metrics.items()},
            "lr": lr_at(pos["global_step"], total_steps, cfg.optim),
            "frames_per_s": n_done * frames_per_step / max(elapsed, 1e-9),
            "seconds": elapsed,
        }
        if info.is_main:
            _append_metrics(run, row)
            for k, v in row.items():
                if k not in ("epoch", "global_step"):
                    writer.add_scalar(f"epoch/{k}", v, epoch)
        if on_epoch is not None:
            on_epoch(epoch, {**metrics, "score": score})
        if pos["bad_epochs"] >= t.patience:
            pos["done"] = True
        if pos["done"] or epoch + 1 >= t.epochs:
            monitor.after_training(pos.get("best_epoch"), epoch + 1, pos["best"], score)
        if not pos["done"] or pos["step"] >= len(steps):
            pos.update(epoch=epoch + 1, step=0, loss_sum=0.0, loss_n=0)
        checkpoint()
    if writer:
        writer.close()
    if info.is_main and monitor.messages:
        write_text(run / "warnings.txt", "\n".join(monitor.messages) + "\n")
    D.teardown(info)
    return run
