"""The training loop, top to bottom: stateful truncated BPTT (or windows) with clipping.

    steertime train --data CACHE --model cnn_lstm --seq-len 10 --out runs/x
    torchrun --nproc-per-node 2 -m steertime train ...      # same script, DDP

`train()` reads in three named phases:

- setup (`_Training.__init__`): check the config, open the cache, fit the output layout,
  build the model, optimiser and batch reader, then either resume from
  `checkpoints/last` or lay out a fresh run folder;
- step (`_Training.step`): read one chunk per lane (B, T frames), reset the state of
  lanes that enter a new drive segment, run the CNN once per frame and the recurrent core
  over the chunk, backpropagate through the chunk only (the carried state is detached),
  clip the global gradient norm and step the optimiser;
- end of epoch (`_Training.end_of_epoch`): run the model streaming over whole val
  segments, keep the best val steering RMSE in `checkpoints/best`, log, maybe stop, and
  write `checkpoints/last`.

Where the run is (epoch, step, best score, …) and when patience is spent live in
`train/position.py`; the run folder's files in `train/runfolder.py`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from steertime.atomic import write_json, write_text
from steertime.data import Cache
from steertime.data.faults import parse_faults
from steertime.data.features import FeatureStore
from steertime.errors import SteertimeError
from steertime.heap import keep_freed_memory
from steertime.models import SequenceModel, create_model, detach_state
from steertime.models.checkpoint import (
    load_ema,
    load_train_state,
    load_weights,
    model_meta,
    read_meta,
    save_checkpoint,
)
from steertime.train import dist as D
from steertime.train import sam
from steertime.train.batches import (
    ANTISYMMETRIC,
    Augment,
    BatchReader,
    stateful_schedule,
    window_schedule,
)
from steertime.train.config import FRAME_ONLY, TrainConfig, frame_only_set, load_config
from steertime.train.ema import WeightEMA
from steertime.train.monitor import TrainingMonitor, effective_warmup, label_note
from steertime.train.optim import lr_at, make_optimizer
from steertime.train.position import Position, loss_is_share, loss_name, still_at_mean
from steertime.train.probe import PROBE, run_probe
from steertime.train.runfolder import (
    append_metrics,
    check_data_hash,
    check_resume,
    recover_checkpoints,
    run_lock,
    started,
)
from steertime.train.soup import TopEpochs
from steertime.train.step import StepLoss
from steertime.train.targets import balance_weights, binned, fit_layout, train_values
from steertime.train.teacher import load_teacher
from steertime.train.track import Tracker
from steertime.train.validate import calibrated, stream_metrics
from steertime.train.warmstart import freeze, warm_start


class TrainingDiverged(SteertimeError):
    pass


def _check_lead_within_guard(
    ahead: int, cache: Cache, what: str = "data.lead + data.smooth"
) -> None:
    """A training frame's target reads labels up to `ahead` frames later (data.lead, plus
    data.smooth's half-width or the longest of train.aux_leads); past a split boundary's
    guard gap that would be a validation or test label."""
    split = cache.manifest["splits"]["config"]
    if split.get("mode") != "drive" and ahead > split.get("guard", 0):
        flags = [f"--mode {split.get('mode')}"]
        flags += [f"--test-session {sid}" for sid in split.get("test_sessions", [])]
        flags += [f"--val-session {sid}" for sid in split.get("val_sessions", [])]
        raise SteertimeError(
            f"{what} = {ahead}: training reads labels {ahead} frames ahead, "
            f"beyond the {split.get('guard')}"
            f"-frame guard between the splits of {cache.path}: training would see "
            f"validation/test labels. Re-split with a larger guard: steertime split "
            f"{cache.path} {' '.join(flags)} --guard {ahead}"
        )


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train a model; returns the run folder. With `resume`, continue `cfg.out`'s run.

    `on_epoch(epoch, metrics)` is called after each validation (metrics include `score`,
    the value early stopping uses, `best`, the lowest so far, and `at_mean`, true while the
    training loss says the model still predicts the mean); it may raise to stop the run
    (e.g. Optuna pruning).
    """
    if not cfg.out:
        raise SteertimeError("train needs an output run folder (out)")
    cfg.validate()  # before any data is opened or anything written
    main = int(os.environ.get("RANK", "0")) == 0  # torchrun: only rank 0 writes the run
    with run_lock(Path(cfg.out)) if main else contextlib.nullcontext():
        cfg = _run_config(cfg, resume, main)
        info = D.setup(cfg.train.device)
        tr: _Training | None = None
        try:
            # the fine-tune of a resumed run has its weights; only a new one needs a probe
            new_probe = cfg.train.probe_epochs and not resume
            probe = run_probe(cfg, train, progress) if new_probe else None
            tr = _Training(cfg, resume, info, probe)
            while tr.pos.epoch < cfg.train.epochs and not tr.pos.done:
                tr.run_epoch(progress, on_epoch)
            tr.write_warnings()
            return tr.run
        finally:  # also when training diverges or on_epoch stops it
            if tr is not None and tr.writer is not None:
                tr.writer.close()
            D.teardown(info)


def resume_config(run: str | Path, overrides: list[str] = ()) -> tuple[TrainConfig, list[str]]:
    """A run's stored config with `overrides` applied, and the (safe) changes they make.

    Raises naming every key that may not change on resume (see `SAFE_ON_RESUME`)."""
    from steertime.train.config import apply_overrides

    run = Path(run)
    if not (run / "config.yaml").is_file():
        from steertime.train.members import existing_members

        if members := [m.name for m in existing_members(run)]:  # a `train --seeds K` folder
            raise SteertimeError(
                f"{run}: holds {len(members)} members ({', '.join(members)}); resume it with "
                f"--seeds {len(members)}"
            )
        if (run / PROBE).is_dir():
            raise SteertimeError(
                f"{run}: its probe (train.probe_epochs) stopped before the fine-tune began; "
                "run the same command without --resume: the probe goes on where it stopped"
            )
        raise SteertimeError(f"{run}: nothing to resume (no config.yaml)")
    stored = load_config(run / "config.yaml")
    wanted = apply_overrides(load_config(run / "config.yaml"), list(overrides))
    wanted.out = str(run)
    safe = check_resume(run, stored.to_dict(), wanted.to_dict())
    return wanted, safe


def _run_config(cfg: TrainConfig, resume: bool, main: bool = True) -> TrainConfig:
    """The config to run: on resume `cfg` if it changes only what is safe to change (else
    an error naming what changed), else `cfg` (which must not overwrite a run)."""
    run = Path(cfg.out)
    if resume:
        if main:  # the lock is held: no other process writes the checkpoints
            for note in recover_checkpoints(run):
                tqdm.write(f"note: {note}", file=sys.stderr)
        if not (run / "checkpoints" / "last").is_dir():
            raise SteertimeError(f"{run}: nothing to resume (no checkpoints/last)")
        stored = load_config(run / "config.yaml")
        if check_resume(run, stored.to_dict(), {**cfg.to_dict(), "out": stored.out}) and main:
            # the run records what it goes on with
            write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return cfg
    if (run / "config.yaml").exists() and started(run):
        raise SteertimeError(f"{run} already holds a run; use --resume, or another --out")
    # a config.yaml without any checkpoint is a start that failed before its first save:
    # the lock is held, so nobody is training there, and starting again loses nothing
    return cfg


def _check_config(cfg: TrainConfig, world: int) -> Augment:
    t = cfg.train
    if t.batch_size % world:
        raise SteertimeError(f"train.batch_size {t.batch_size} must divide by {world} processes")
    augment = Augment(
        cfg.data.flip,
        cfg.data.brightness,
        tuple(parse_faults(cfg.data.faults)),
        cfg.data.shift,
        tuple(cfg.data.strides),
        cfg.data.color,
        cfg.data.mixup,
        cfg.data.blur,
    )
    if augment.mixup and augment.faults:  # half a blank frame is neither seen nor missing
        raise SteertimeError("data.mixup blends frames; it cannot be combined with data.faults")
    if cfg.data.features and frame_only_set(cfg.data):
        keys = " / ".join(f"data.{k}" for k in FRAME_ONLY)
        raise SteertimeError(f"{keys} need frames, not a features store")
    return augment


class _Training:
    """One training run's objects and position; the phases of `train()` are its methods."""

    # --- setup ------------------------------------------------------------------------
    def __init__(
        self, cfg: TrainConfig, resume: bool, info: D.DistInfo, probe: Path | None = None
    ) -> None:
        self.started = time.perf_counter()  # elapsed_s counts set-up too, as a user waits for it
        self.cfg, self.t, self.info = cfg, cfg.train, info
        t = self.t
        self.writer: SummaryWriter | None = None
        self.run = Path(cfg.out)
        self.last_dir = self.run / "checkpoints" / "last"
        self.best_dir = self.run / "checkpoints" / "best"
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.heap == "keep":
            keep_freed_memory()
        self.augment = _check_config(cfg, info.world)
        cuda = info.device.type == "cuda"
        if t.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise SteertimeError(
                f"train.precision=bf16: {torch.cuda.get_device_name(info.device)} has no "
                "bfloat16; use train.precision=fp32"
            )
        self.rows = t.batch_size // info.world

        self.cache = cache = Cache.open(cfg.data.cache)
        if resume:
            stored = read_meta(self.last_dir).get("data_hash")
            check_data_hash(self.run, stored, cfg.data.cache, cache.content_hash)
        # Smoothing reads labels `smooth` frames ahead, as a lead does; so do the
        # auxiliary targets, `aux_leads` frames past the lead.
        if max(t.aux_leads, default=0) > cfg.data.smooth:
            ahead, what = max(t.aux_leads), "data.lead + max(train.aux_leads)"
        else:
            ahead, what = cfg.data.smooth, "data.lead + data.smooth"
        _check_lead_within_guard(cfg.data.lead + ahead, cache, what)
        labels = train_values(cache, cfg.data.outputs)  # read once: layout, balance, notes
        self.layout = layout = fit_layout(
            cache, cfg.data.outputs, cfg.data.weights, cfg.data.clip_outputs, labels
        )
        layout.spread = t.spread
        if t.bins:
            layout = self.layout = binned(layout, t.bins, cfg.model)
        self.val_segs = cache.segments("val")
        self.tracker = (
            Tracker(t.track, t.track_split, cache, layout) if t.track and info.is_main else None
        )
        self.model = model = self._build_model()
        steer = layout.index("steering") if "steering" in layout.names else 0
        self.skip = t.burn_in if t.mode == "windows" else 0
        self.store = self._open_features()
        # On resume the weights come from checkpoints/last; the first run's source may be gone.
        source = str(probe or t.init_from)
        start = source and not resume
        start_note = warm_start(model, source, cfg.model["name"]).summary(source) if start else ""
        if t.freeze:
            frozen = freeze(model, t.freeze)
            start_note += f"{'; ' if start_note else ''}train.freeze: {len(frozen)} tensors fixed"
        if (t.spread or t.bins) and model.autoregressive:
            raise SteertimeError(
                f"{'train.spread' if t.spread else 'train.bins'}: {cfg.model['name']} feeds "
                "its outputs back; a spread or bins are only trained for models that do not "
                "(use cnn_lstm, pilotnet, …)"
            )
        step_loss = StepLoss(
            model,
            layout.weights,
            steer,
            t.ar_lambda,
            self.skip,
            self.store is not None,
            spread=t.spread,
            bin_centers=layout.bin_centers() if layout.bins else None,
            precision=t.precision,
            aux_weight=t.aux_weight,
            recon=(t.recon_weight, tuple(t.recon_grid), t.recon_lead) if t.recon_weight else None,
            balance=self._balance(labels, steer) if cfg.data.balance else None,
        ).to(info.device)
        self.ddp = DistributedDataParallel(step_loss) if info.enabled else step_loss
        self.opt = make_optimizer(model, cfg.optim)
        self.meta_extra = {
            "frame": cache.frame.to_dict(),
            "source_size": cache.manifest["drives"][0].get("source_size"),
            "data_hash": cache.content_hash,
            "data_path": str(cache.path),
            "lead_frames": cfg.data.lead,
        }
        self.steps_per_epoch = len(self.schedule(0))
        self.total_steps = t.max_steps or self.steps_per_epoch * t.epochs
        self.warmup, warmup_note = effective_warmup(cfg.optim.warmup_steps, self.total_steps)
        self.frames_per_step = t.batch_size * t.seq_len
        d = cfg.data
        teacher = (
            load_teacher(d.teacher, d.teacher_weight, cache, layout.names, d.lead)
            if d.teacher
            else None
        )
        self.reader = BatchReader(
            cache,
            layout.names,
            t.seq_len + self.skip,
            self.rows,
            self.store,
            cfg.data.lead,
            self.augment.faults,
            model.missing_input,
            cfg.data.smooth,
            t.aux_leads,
            teacher,
            d.shift_steer,
        )
        self.carried = model.init_state(self.rows, info.device)
        self.pos = Position()
        if resume:
            self._resume()
        elif info.is_main:
            self._start_run_folder()
        self.elapsed_before = self.pos.elapsed_s  # what an interrupted run had trained
        self.ema = WeightEMA(model, cfg.optim.ema, self.pos.ema_n or 0) if cfg.optim.ema else None
        if self.ema is not None and resume:
            self.ema.shadow.update(load_ema(self.last_dir, info.device))
        if info.is_main:
            self.writer = SummaryWriter(str(self.run / "tb"))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.clip = cfg.optim.clip_norm if cfg.optim.clip_norm > 0 else math.inf
        self.monitor = TrainingMonitor(
            model, self.writer, self.clip, t.diagnostics and info.is_main
        )
        self.monitor.labels = label_note(labels)
        self.loss_is_share = loss_is_share(t, model.autoregressive, cfg.data.balance > 0)
        self.monitor.loss_not_a_share = not self.loss_is_share
        if warmup_note and info.is_main:
            self.monitor.warn("warmup", warmup_note)
        if start_note and info.is_main:
            tqdm.write(f"note: {start_note}", file=sys.stderr)
        for note in teacher.notes if teacher and info.is_main else []:
            tqdm.write(f"note: {note}", file=sys.stderr)
        self.top = self._top_epochs(resume) if t.soup > 1 and info.is_main else None
        self.soup_line = ""

    def _balance(self, labels: dict[str, np.ndarray], steer: int) -> tuple[np.ndarray, np.ndarray]:
        """`data.balance`'s bins and weights, fitted on the training split's labels (and
        their mirror images when `data.flip` negates the steering of half the chunks)."""
        name = self.layout.names[steer]
        values = labels[name]
        if self.cfg.data.flip and name in ANTISYMMETRIC:
            values = np.concatenate([values, -values])
        return balance_weights(self.layout, values, steer, self.cfg.data.balance)

    def _build_model(self) -> SequenceModel:
        torch.manual_seed(self.t.seed)
        spec = {k: v for k, v in self.cfg.model.items() if k != "name"}
        spec.update(
            n_outputs=self.layout.n_model_outputs,
            height=self.cache.frame.height,
            width=self.cache.frame.width,
        )
        if self.t.aux_leads:  # config.validate refused models without an auxiliary head
            spec["aux_outputs"] = self.layout.k * len(self.t.aux_leads)
        if self.t.recon_weight:  # config.validate refused models without the head
            spec["recon_outputs"] = self.t.recon_grid[0] * self.t.recon_grid[1]
            spec["recon_memory"] = self.t.recon_lead > 0
        if spec.get("hold_on_missing") and self.layout.spread:
            # the head emits K means then K log-spreads: hold the means only
            spec["held_outputs"] = self.layout.k
        return create_model(self.cfg.model["name"], **spec).to(self.info.device)

    def _top_epochs(self, resume: bool) -> TopEpochs | None:
        if not self.val_segs:
            self.monitor.warn("soup", "train.soup needs validation frames (val split): no soup")
            return None
        folder = self.run / "checkpoints" / "top"
        if not resume:  # weights of an earlier, failed start are not this run's
            shutil.rmtree(folder, ignore_errors=True)
        return TopEpochs(folder, self.t.soup)

    def _open_features(self) -> FeatureStore | None:
        if not self.cfg.data.features:
            return None
        store = FeatureStore(self.cfg.data.features)
        encoder = self.model.cached_encoder()
        if encoder is None:
            raise SteertimeError(f"{self.cfg.model['name']} cannot train over cached features")
        store.check(*encoder, self.cache)
        if self.cfg.data.flip:
            store.require_flip()  # at start, not at the first mirrored chunk
        return store

    def _resume(self) -> None:
        info = self.info
        load_weights(self.last_dir, self.model, info.device)
        meta, full = load_train_state(self.last_dir, self.opt)
        self.pos = Position.from_dict(meta["position"])
        self.carried = {
            k: v[info.rank :: info.world].to(info.device) for k, v in full.items()
        } or self.carried
        if info.is_main:
            append_metrics(self.run, {}, keep_epochs_below=self.pos.epoch)

    def _start_run_folder(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        write_text(self.run / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        write_json(self.run / "layout.json", self.layout.to_dict())

    def schedule(self, epoch: int) -> list[list]:
        t, segs = self.t, self.cache.segments("train")
        if t.mode == "stateful":
            return stateful_schedule(segs, t.seq_len, t.batch_size, t.seed, epoch, self.augment)
        if t.mode == "windows":
            return window_schedule(
                segs, t.burn_in + t.seq_len, t.seq_len, t.batch_size, t.seed, epoch, self.augment
            )
        raise SteertimeError(f"train.mode must be stateful or windows, got {t.mode!r}")

    def checkpoint(self) -> None:
        """`checkpoints/last`: weights, optimiser, carried state, EMA and position."""
        info = self.info
        full = {k: D.gather_rows(v, info) for k, v in self.carried.items()}
        if info.is_main:
            if self.ema is not None:
                self.pos.ema_n = self.ema.n
            meta = model_meta(
                self.model, self.layout, {**self.meta_extra, "position": self.pos.to_dict()}
            )
            shadow = self.ema.shadow if self.ema else None
            save_checkpoint(self.last_dir, self.model, meta, self.opt, full, shadow)

    # --- one epoch: steps, then its end ------------------------------------------------
    def run_epoch(self, progress: bool, on_epoch: Callable[[int, dict], None] | None) -> None:
        t, info, pos = self.t, self.info, self.pos
        epoch = pos.epoch
        steps = self.schedule(epoch)
        mine = [[row[b] for b in range(info.rank, t.batch_size, info.world)] for row in steps]
        bar = tqdm(
            total=len(steps) * self.frames_per_step,
            initial=pos.step * self.frames_per_step,
            unit="fr",
            unit_scale=True,
            desc=f"epoch {epoch}",
            disable=not (progress and info.is_main),
            dynamic_ncols=True,
            # off a terminal every redraw is a new line in a log: one every 30 s is enough
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )
        started = time.perf_counter()
        n_done = 0
        for i in range(pos.step, len(steps)):
            loss, gnorm, lr = self.step(mine[i], epoch, i)
            pos.step = i + 1
            n_done += 1
            bar.update(self.frames_per_step)
            bar.set_postfix(loss=f"{pos.mean_loss:.4f}", lr=f"{lr:.2g}", refresh=False)
            if self.writer and pos.global_step % 10 == 0:
                self.writer.add_scalar("train/loss", loss, pos.global_step)
                self.writer.add_scalar("train/grad_norm", gnorm, pos.global_step)
                self.writer.add_scalar("train/lr", lr, pos.global_step)
            if t.max_steps and pos.global_step >= t.max_steps:
                pos.done = True
                break
            if pos.global_step % t.checkpoint_every == 0:
                self.checkpoint()
        bar.close()
        elapsed = time.perf_counter() - started
        self.end_of_epoch(epoch, len(steps), n_done, elapsed, on_epoch)
        if progress and info.is_main:
            # the numbers a user waits for, on the terminal and not only in metrics.csv
            tqdm.write(self.epoch_line(epoch), file=sys.stderr)
            if self.soup_line:
                tqdm.write(self.soup_line, file=sys.stderr)

    # --- step ---------------------------------------------------------------------------
    def step(self, chunks: list, epoch: int, i: int) -> tuple[float, float, float]:
        """One optimiser step on this process's chunks -> (loss, grad norm, lr)."""
        t, info, pos, model, opt = self.t, self.info, self.pos, self.model, self.opt
        frames, target, reset = self.reader.read(chunks)
        x = torch.from_numpy(frames).to(info.device)  # (B, T, H, W, 3) uint8 or (B, T, E)
        y = self.layout.normalize(torch.from_numpy(target).to(info.device))  # (B, T, K)
        if t.mode == "stateful":
            state = model.reset_rows(self.carried, torch.from_numpy(reset).to(info.device))
        else:
            state = model.init_state(self.rows, info.device)
        lr = lr_at(pos.global_step, self.total_steps, self.cfg.optim, self.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        missing = None
        if model.missing_input:  # frames the fault augmentation left without an image
            missing = torch.from_numpy(self.reader.missing).to(info.device)
        aux = None
        if self.t.aux_leads:  # (B, T, L, K), normalised as the targets are
            aux = self.layout.normalize(torch.from_numpy(self.reader.aux_targets).to(info.device))
        loss, new_state = self.ddp(x, y, state, missing, aux)
        if not torch.isfinite(loss):
            where = ", ".join(f"{self.cache.drives[c.drive].name}@{c.start}" for c in chunks[:4])
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {epoch} step {i} (global step "
                f"{pos.global_step}; batch chunks {where} …). Weights were not updated "
                f"and the last checkpoint is intact. Try a lower optim.lr (now {lr:.3g}), "
                f"keep optim.clip_norm on (now {self.cfg.optim.clip_norm}), or check the data."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.sam > 0:
            self._sharpness_aware(x, y, state, missing, aux)
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if not torch.isfinite(gnorm):
            raise TrainingDiverged(
                f"gradient norm is {gnorm.item()} at epoch {epoch} step {i}; weights were "
                f"not updated. Lower optim.lr (now {lr:.3g}) or set optim.clip_norm."
            )
        self.monitor.after_backward(pos.global_step, float(gnorm), lr)
        opt.step()
        # A finite loss and gradient can still give NaN/inf weights (optim.lr huge): stop
        # here, before anything is validated or saved from them.
        norms = torch._foreach_norm([p.detach() for p in self.params])
        if norms and not bool(torch.isfinite(torch.stack(norms)).all()):
            raise TrainingDiverged(
                f"the weights became NaN/inf after the optimiser step at epoch {epoch} step "
                f"{i} (global step {pos.global_step}, lr {lr:.3g}); nothing was saved from "
                "them and the last checkpoint is intact. Lower optim.lr."
            )
        if self.ema is not None:
            self.ema.update(model)
        value = loss.item()
        self.monitor.after_step(pos.global_step, value)
        self.carried = detach_state(new_state)
        pos.global_step += 1
        pos.loss_sum += value
        pos.loss_n += 1
        return value, float(gnorm), lr

    def _sharpness_aware(self, *batch) -> None:
        # optim.sam: replace the gradient by the one at the weights moved uphill, taken from
        # the same carried state; the state the step carries on is the first pass's.
        moves = sam.ascend(self.params, self.cfg.optim.sam)
        if moves is None:  # a non-finite gradient: the caller's check reports it
            return
        self.monitor.recording = False  # saturation is the model's own, not the moved one's
        try:
            self.opt.zero_grad(set_to_none=True)
            self.ddp(*batch)[0].backward()
        finally:
            self.monitor.recording = True
            sam.descend(moves)

    # --- end of epoch (or of max_steps): validate, keep the best, maybe stop ------------
    def end_of_epoch(
        self,
        epoch: int,
        n_steps: int,
        n_done: int,
        elapsed: float,
        on_epoch: Callable[[int, dict], None] | None,
    ) -> None:
        t, info, pos, model = self.t, self.info, self.pos, self.model
        # The model that is validated and kept: the weights' average when optim.ema is on.
        kept = self.ema.applied(model) if self.ema is not None else contextlib.nullcontext(model)
        with kept:
            metrics = {}
            if info.is_main and self.val_segs:
                metrics = stream_metrics(
                    model,
                    self.cache,
                    self.val_segs,
                    self.layout,
                    info.device,
                    self.store,
                    self.cfg.data.lead,
                )
            metrics = D.broadcast(metrics, info)
            key = "rmse_steering" if "rmse_steering" in metrics else next(iter(metrics), None)
            # Each process has its own lanes' training loss: rank 0's decides for all, so
            # every process stops at the same epoch.
            score, at_mean = D.broadcast(
                (
                    metrics.get(key, pos.mean_loss),
                    still_at_mean(self.loss_is_share, pos.mean_loss),
                ),
                info,
            )
            improved = score < pos.best
            if info.is_main and improved:
                extra = {**self.meta_extra, "epoch": epoch, "val": metrics, "score": score}
                layout = calibrated(self.layout, metrics)  # spreads fitted on val
                save_checkpoint(self.best_dir, model, model_meta(model, layout, extra))
            if info.is_main and self.top is not None:
                self.top.offer(epoch, score, model, model_meta(model, self.layout, {}))
            tracked = self._track(model)
        pos.judge(score, epoch, at_mean)
        row = {
            "epoch": epoch,
            "global_step": pos.global_step,
            "train_loss": pos.mean_loss,
            **{f"val_{k}": v for k, v in metrics.items()},
            "lr": lr_at(pos.global_step, self.total_steps, self.cfg.optim, self.warmup),
            "frames_per_s": n_done * self.frames_per_step / max(elapsed, 1e-9),
            "seconds": elapsed,
            **tracked,
            "elapsed_s": self.elapsed(),
        }
        pos.elapsed_s = row["elapsed_s"]
        self.last_row = row
        if info.is_main:
            append_metrics(self.run, row)
            for k, v in row.items():
                if k.startswith("track_"):
                    self.writer.add_scalar(f"track/{k[6:]}", v, epoch)
                elif k not in ("epoch", "global_step"):
                    self.writer.add_scalar(f"epoch/{k}", v, epoch)
        if on_epoch is not None:
            on_epoch(epoch, {**metrics, "score": score, "best": pos.best, "at_mean": at_mean})
        if pos.bad_epochs >= t.patience:
            pos.done = True
        if pos.done or epoch + 1 >= t.epochs:
            if info.is_main and self.top is not None:
                self.make_soup()
            self.monitor.after_training(pos.best_epoch, epoch + 1, pos.best, score)
        if not pos.done or pos.step >= n_steps:
            pos.epoch, pos.step, pos.loss_sum, pos.loss_n = epoch + 1, 0, 0.0, 0
        self.checkpoint()

    def elapsed(self) -> float:
        """Seconds this run has trained, over resumes: set-up, steps, validation and
        checkpoints, without `train.track`'s scoring (which a run without it does not do)."""
        tracking = self.tracker.seconds if self.tracker is not None else 0.0
        return self.elapsed_before + time.perf_counter() - self.started - tracking

    def _track(self, model: SequenceModel) -> dict[str, float]:
        """`train.track`'s scores of `model`; nothing here reads them (see train/track.py)."""
        if self.tracker is None:
            return {}
        return self.tracker.score(model, self.info.device, self.cfg.data.lead)

    def make_soup(self) -> None:
        """Average the K best epochs' weights (`train.soup`); keep the average as
        `checkpoints/best` if it validates better than the best epoch (`soup.json` says)."""
        state = self.top.average(self.info.device)
        if state is None:
            return
        model, pos = self.model, self.pos
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        try:
            metrics = stream_metrics(
                model,
                self.cache,
                self.val_segs,
                self.layout,
                self.info.device,
                self.store,
                self.cfg.data.lead,
            )
            key = "rmse_steering" if "rmse_steering" in metrics else next(iter(metrics))
            score = metrics[key]
            kept = score < pos.best
            epochs = self.top.epochs()
            tracked = self._track(model)
            if kept:
                extra = {
                    **self.meta_extra,
                    "epoch": pos.best_epoch,
                    "soup_epochs": epochs,
                    "val": metrics,
                    "score": score,
                }
                layout = calibrated(self.layout, metrics)
                save_checkpoint(self.best_dir, model, model_meta(model, layout, extra))
        finally:
            model.load_state_dict(own)
        write_json(
            self.run / "soup.json",
            {
                "epochs": epochs,
                "val": metrics,
                "score": score,
                "best_epoch": pos.best_epoch,
                "best_epoch_score": pos.best,
                "kept": kept,
                **tracked,
                "elapsed_s": self.elapsed(),
            },
        )
        shown = ", ".join(str(e + 1) for e in epochs)
        verdict = "kept as best" if kept else f"not kept (best epoch: {pos.best:.4g})"
        self.soup_line = f"soup of epochs {shown}: val {key} {score:.4g}; {verdict}"
        if self.writer is not None:
            self.writer.add_scalar("soup/score", score, len(epochs))

    def epoch_line(self, epoch: int) -> str:
        """One line per epoch: train loss as a share of the label variance, val, best."""
        pos, row = self.pos, self.last_row
        val = {k[4:]: v for k, v in row.items() if k.startswith("val_rmse_")}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in val.items()) or "no val split"
        best = (
            f"best {pos.best:.4g} (epoch {pos.best_epoch + 1})"
            if pos.best_epoch is not None
            else ""
        )
        return (
            f"epoch {epoch + 1}/{self.t.epochs}: train loss {row['train_loss']:.3g} "
            f"({loss_name(self.t)}), "
            f"lr {row['lr']:.2g}; val {shown}; {best}"
        )

    def write_warnings(self) -> None:
        if self.info.is_main and self.monitor.messages:
            write_text(self.run / "warnings.txt", "\n".join(self.monitor.messages) + "\n")
