"""Several seeds of one recipe trained and averaged into one run (`train --seeds K`).

Averaging separately trained runs is the one change that has moved held-out steering
beyond the noise on real tubs (about 2% for two to four seeds; docs/benchmarks.md), so it
is one flag rather than K commands and an `ensemble`. Layout of the run folder `out`:

    out/members/seed{S}/   each a complete, resumable run (seeds S = train.seed + k)
    out/checkpoints/...    the ensemble of them, built when every member is trained

Resume continues every member where it stopped (a finished one returns at once), starts
any not yet begun, and rebuilds the ensemble.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from steertime.errors import SteertimeError
from steertime.train.config import TrainConfig
from steertime.train.runfolder import started

MEMBERS = "members"


def member_configs(cfg: TrainConfig, out: str | Path, k: int) -> list[TrainConfig]:
    """`cfg` with train.seed S, S+1, ..., S+k-1, each run in `out/members/seed{S+i}`."""
    configs = []
    for i in range(k):
        one = copy.deepcopy(cfg)
        one.train.seed = cfg.train.seed + i
        one.out = str(Path(out) / MEMBERS / f"seed{one.train.seed}")
        configs.append(one)
    return configs


def existing_members(out: str | Path) -> list[Path]:
    """The member folders under `out/members/`, by seed (seed10 after seed9)."""
    found = [r for r in (Path(out) / MEMBERS).glob("seed*") if r.name[4:].isdigit()]
    return sorted(found, key=lambda r: int(r.name[4:]))


def recipe_of(out: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """For `--resume`: the recipe of a members run — its first member's stored config
    with `overrides` applied (and checked, as any resume), `out` the ensemble's folder."""
    from steertime.train.loop import resume_config

    first = next((r for r in existing_members(out) if started(r)), None)
    if first is None:
        raise SteertimeError(f"{out}: no member run to resume; start it without --resume")
    cfg, _ = resume_config(first, overrides)
    cfg.out = str(out)
    return cfg


def train_members(
    cfg: TrainConfig, seeds: int, resume: bool = False, overrides: list[str] = ()
) -> Path:
    """Train `seeds` runs of `cfg` (train.seed, +1, ...) under `cfg.out/members/` and write
    their equal-weight ensemble to `cfg.out`; returns `cfg.out`. With `resume`, a started
    member goes on from its stored config plus `overrides`; one not started begins from
    `cfg` (see `recipe_of`)."""
    from steertime.models.ensemble import build_ensemble
    from steertime.train.loop import resume_config, train

    if seeds < 2:
        raise SteertimeError(f"--seeds averages runs: give 2 or more, got {seeds}")
    out = Path(cfg.out)
    if not resume and (out / "checkpoints").exists():
        raise SteertimeError(f"{out} already holds a run; use --resume, or another --out")
    fresh = member_configs(cfg, out, seeds)
    runs = [Path(m.out) for m in fresh]
    others = [r.name for r in existing_members(out) if r not in runs]
    if resume and others:  # an average of fewer members would quietly drop trained ones
        raise SteertimeError(
            f"{out}: members {', '.join(others)} are not among --seeds {seeds} from seed "
            f"{cfg.train.seed}; resume with the --seeds the run was started with"
        )
    for run, member in zip(runs, fresh, strict=True):
        again = resume and (run / "config.yaml").is_file() and started(run)
        if again:
            member, _ = resume_config(run, overrides)
        train(member, resume=again)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one process writes the ensemble
        build_ensemble(runs, out, overwrite=resume)
    return out
