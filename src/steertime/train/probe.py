"""Linear probe, then fine-tune (`train.probe_epochs`; LP-FT, Kumar et al. 2022).

Fine-tuning a pretrained encoder under a freshly initialised head sends the head's large,
random early gradients into the pretrained weights, and the features it learnt on
ImageNet are partly lost before the head knows what to ask of them. So the run first
trains everything but the encoder over the frozen encoder's features — extracted once,
as `steertime features` does, so this stage costs seconds — and the fine-tune starts from
that model's best weights.

    OUT/probe_features/   the frozen encoder's features of the training cache
    OUT/probe/            the probe: a complete run (config, checkpoints, metrics)
    OUT/...               the fine-tune, started from OUT/probe's best weights

With `train.init_from`, the probe starts from that run (the fine-tune from the probe).

A probe that finished is reused when the fine-tune is started again; one that stopped
part-way is resumed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

from torch import distributed as dist

from steertime.atomic import write_text
from steertime.train.config import (
    FRAME_ONLY,
    DataConfig,
    OptimConfig,
    TrainConfig,
    resolved_model,
)

PROBE = "probe"
FEATURES = "probe_features"
FINISHED = "probe_finished"  # in OUT/probe: written once the probe's training returned


def probe_config(cfg: TrainConfig) -> TrainConfig:
    """The probe's config: `cfg` over the frozen encoder's features at `train.probe_lr`
    for `train.probe_epochs` (patience `train.probe_patience`, the default warm-up),
    without what needs frames: pixel augmentations and the reconstruction head train in
    the fine-tune only."""
    t, out = cfg.train, Path(cfg.out)
    p = copy.deepcopy(cfg)
    p.model["encoder_cfg"] = {**_encoder_cfg(cfg), "finetune_blocks": 0}
    p.data.features = str(out / FEATURES)
    p.optim.lr = t.probe_lr
    p.optim.warmup_steps = OptimConfig.warmup_steps
    p.train.epochs, p.train.patience = t.probe_epochs, t.probe_patience
    p.train.probe_epochs, p.train.track = 0, ""
    # what needs frames (pixel augmentations, a head that redraws them) is the fine-tune's
    for k in FRAME_ONLY:
        setattr(p.data, k, getattr(DataConfig(), k))
    p.train.recon_weight, p.train.recon_lead = 0.0, 0
    p.out = str(out / PROBE)
    return p


def run_probe(cfg: TrainConfig, train: Callable[..., Path], progress: bool) -> Path:
    """Train (or reuse, or resume) the probe of `cfg` with `train`; returns its run folder,
    whose best weights the fine-tune starts from."""
    from steertime.data.cache import Cache
    from steertime.data.features import extract_features
    from steertime.train.runfolder import started

    p = probe_config(cfg)
    run = Path(p.out)
    if not (run / FINISHED).is_file():
        main = int(os.environ.get("RANK", "0")) == 0
        if main:  # under torchrun one process extracts, the others wait for it
            cache = Cache.open(cfg.data.cache)
            encoder = resolved_model(cfg.model).encoder
            extract_features(cache, p.data.features, encoder, _encoder_cfg(p), flip=cfg.data.flip)
        if dist.is_initialized():
            dist.barrier()
        train(p, resume=started(run), progress=progress)
        if main:
            write_text(run / FINISHED, "the fine-tune starts from this run's best weights\n")
    return run


def _encoder_cfg(cfg: TrainConfig) -> dict:
    """The encoder config the model is built with (its registered defaults included)."""
    return dict(resolved_model(cfg.model).encoder_cfg)
