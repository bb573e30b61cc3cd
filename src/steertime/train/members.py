"""Several seeds of one recipe trained and averaged into one run (`train --seeds K`).

Averaging separately trained runs is the one change that has moved held-out steering
beyond the noise on real tubs (about 2% for two to four seeds; docs/benchmarks.md), so it
is one flag rather than K commands and an `ensemble`. Layout of the run folder `out`:

    out/members/seed{S}/   each a complete, resumable run (seeds S = train.seed + k)
    out/checkpoints/...    the ensemble of them, built when every member is trained

With `alternate` overrides (`--alternate KEY=VALUE`), every second member (seeds S+1,
S+3, ...) also takes them: members that err differently average better than more seeds of
one recipe (on a Donkeycar tub, two plain seeds and two with `train.recon_weight=1`
averaged 0.983x four plain seeds, with an interval excluding 1; docs/benchmarks.md). They
are kept in `out/members/alternate.json`, so `--resume` trains the same recipe again.

Resume continues every member where it stopped (a finished one returns at once), starts
any not yet begun, and rebuilds the ensemble.

With `jobs` > 1 the members train that many at a time, each in its own process with its
share of the CPU threads. That pays as far as one run does not turn more threads into
speed: on a 2-core machine two members side by side (one thread each) trained 1.15x the
frames/s of one run on both cores, and took 0.91x the wall time of the two one after the
other (docs/benchmarks.md). The members are the same either way, given the same
`train.threads`.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

from steertime.atomic import write_json
from steertime.errors import SteertimeError
from steertime.train.config import TrainConfig, apply_overrides, validate
from steertime.train.runfolder import started

MEMBERS = "members"
ALTERNATE = "alternate.json"  # in out/members/: the overrides of every second member


def member_configs(
    cfg: TrainConfig, out: str | Path, k: int, alternate: list[str] = ()
) -> list[TrainConfig]:
    """`cfg` with train.seed S, S+1, ..., S+k-1, each run in `out/members/seed{S+i}`;
    the members of odd i also take the `alternate` overrides (checked here, before any
    member trains)."""
    configs = []
    for i in range(k):
        one = copy.deepcopy(cfg)
        if alternate and i % 2:
            try:
                validate(apply_overrides(one, list(alternate)))
            except SteertimeError as e:
                raise SteertimeError(f"--alternate {' '.join(alternate)}: {e}") from None
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
    cfg: TrainConfig,
    seeds: int,
    resume: bool = False,
    overrides: list[str] = (),
    jobs: int = 1,
    alternate: list[str] = (),
) -> Path:
    """Train `seeds` runs of `cfg` (train.seed, +1, ...) under `cfg.out/members/` and write
    their equal-weight ensemble to `cfg.out`; returns `cfg.out`. With `resume`, a started
    member goes on from its stored config plus `overrides`; one not started begins from
    `cfg` (see `recipe_of`). `jobs` members train at once, in separate processes.
    `alternate`: overrides for every second member (on resume: those it started with)."""
    from steertime.models.ensemble import build_ensemble
    from steertime.train.loop import resume_config

    if seeds < 2:
        raise SteertimeError(f"--seeds averages runs: give 2 or more, got {seeds}")
    if jobs < 1:
        raise SteertimeError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SteertimeError(
            "--jobs trains members side by side on one machine; under "
            "torchrun the processes already share each member: drop --jobs"
        )
    out = Path(cfg.out)
    if not resume and (out / "checkpoints").exists():
        raise SteertimeError(f"{out} already holds a run; use --resume, or another --out")
    alternate = _alternate(out, list(alternate), resume)
    fresh = member_configs(cfg, out, seeds, alternate)  # checked before anything is written
    if alternate and not resume:
        (out / MEMBERS).mkdir(parents=True, exist_ok=True)
        write_json(out / MEMBERS / ALTERNATE, alternate)
    elif not resume:  # a start that failed before any member began may have left one
        (out / MEMBERS / ALTERNATE).unlink(missing_ok=True)
    runs = [Path(m.out) for m in fresh]
    others = [r.name for r in existing_members(out) if r not in runs]
    if resume and others:  # an average of fewer members would quietly drop trained ones
        raise SteertimeError(
            f"{out}: members {', '.join(others)} are not among --seeds {seeds} from seed "
            f"{cfg.train.seed}; resume with the --seeds the run was started with"
        )
    todo = []
    for run, member in zip(runs, fresh, strict=True):
        again = resume and (run / "config.yaml").is_file() and started(run)
        if again:
            member, _ = resume_config(run, overrides)
        todo.append((member, again))
    if jobs == 1:
        from steertime.train import dist as D
        from steertime.train.loop import train

        info = D.setup(cfg.train.device)  # under torchrun: one process group for all members
        try:
            for member, again in todo:
                train(member, resume=again)
        finally:
            D.teardown(info)
    else:
        _train_side_by_side(todo, jobs)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one process writes the ensemble
        build_ensemble(runs, out, overwrite=resume)
    return out


def _alternate(out: Path, given: list[str], resume: bool) -> list[str]:
    """The every-second-member overrides: `given` on a fresh start (the caller keeps
    them beside the members); on resume, the kept ones, which `given` may repeat but not
    change."""
    kept = out / MEMBERS / ALTERNATE
    stored = json.loads(kept.read_text()) if kept.is_file() else []
    if resume:
        if given and given != stored:
            raise SteertimeError(
                f"{out} was started with --alternate {' '.join(stored) or '(none)'}; resume "
                "without --alternate, or with the same overrides"
            )
        return stored
    return given


def _train_side_by_side(todo: list[tuple[TrainConfig, bool]], jobs: int) -> None:
    """Train the members `jobs` at a time in spawned processes (a forked one would inherit
    torch's thread pools). A member with `train.threads` 0 (torch's default: every core)
    gets its share of the cores instead, so the members do not fight over them."""
    jobs = min(jobs, len(todo))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // jobs)
    for member, _ in todo:
        if member.train.threads == 0:
            member.train.threads = share
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(jobs, initializer=_ignore_ctrl_c, maxtasksperchild=1)
    try:
        for _ in pool.imap_unordered(_train_member, todo):
            pass  # raises the first failure as it comes
    except BaseException:
        # Ctrl-C or a failure stops every member now. A killed member loses at most the
        # steps since its last checkpoint (written atomically): --resume goes on from it.
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def _ignore_ctrl_c() -> None:
    # The terminal sends Ctrl-C to every process; only the parent acts on it (above), so a
    # member never half-handles it and a queued one never starts after it. The parent's
    # SIGTERM then exits the member through Python, which releases what it registered
    # (locks the parent's resource tracker would otherwise report as leaked).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _train_member(job: tuple[TrainConfig, bool]) -> str:
    """One member (config, resume), in its own process: a line per epoch instead of a
    progress bar, since several members share the terminal."""
    from steertime.train.loop import train

    member, resume = job
    name = Path(member.out).name
    began = time.perf_counter()

    def line(epoch: int, m: dict) -> None:
        print(
            f"{name} epoch {epoch + 1}/{member.train.epochs}: val {m['score']:.4g}, "
            f"best {m['best']:.4g}",
            file=sys.stderr,
            flush=True,
        )

    run = train(member, resume=resume, progress=False, on_epoch=line)
    print(f"{name} trained in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    return str(run)
