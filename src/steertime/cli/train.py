"""`steertime` commands: training and hyper-parameter search."""

from __future__ import annotations

from pathlib import Path

import typer

from steertime.cli.app import app, console
from steertime.errors import SteertimeError


@app.command()
def train(
    data_: Path = typer.Option(None, "--data", help="Prepared cache (steertime prepare)."),
    model: str = typer.Option(None, help="Registered model, e.g. pilotnet, cnn_lstm, komanda."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder to create (or resume)."),
    seq_len: int = typer.Option(None, help="TBPTT chunk length (train.seq_len)."),
    epochs: int = typer.Option(None, help="train.epochs"),
    batch_size: int = typer.Option(None, help="train.batch_size (lanes over all processes)."),
    lr: float = typer.Option(None, help="optim.lr"),
    outputs: str = typer.Option(None, help="Signals to predict, e.g. steering,speed."),
    config: Path = typer.Option(None, help="YAML config (e.g. written by tune or a run)."),
    set_: list[str] = typer.Option([], "--set", help="Override: section.key=value."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
    seeds: int = typer.Option(
        1,
        help="Train this many seeds (train.seed, +1, ...) under OUT/members/ and write their "
        "average to OUT as one run (steertime ensemble): about 2% better held out, K times "
        "the training and the per-frame compute.",
    ),
    jobs: int = typer.Option(
        1,
        help="With --seeds: members trained at once, each in its own process with its share "
        "of the cores; the same members, in less wall time where one run leaves cores idle.",
    ),
    alternate: list[str] = typer.Option(
        [],
        "--alternate",
        help="With --seeds: an override (section.key=value, repeatable) for every second "
        "member only, e.g. train.recon_weight=1: members that err differently average "
        "better than seeds of one recipe.",
    ),
) -> None:
    """Train a model on a prepared cache (stateful truncated BPTT by default)."""
    from steertime.evaluate.cost import describe, training_cost
    from steertime.train import TrainConfig, apply_overrides, load_config
    from steertime.train import train as run_training
    from steertime.train.loop import resume_config
    from steertime.train.members import recipe_of, train_members

    if seeds < 1:
        raise SteertimeError(f"--seeds must be >= 1, got {seeds}")
    if jobs != 1 and seeds < 2:
        raise SteertimeError("--jobs trains the members of --seeds K side by side; add --seeds")
    if alternate and seeds < 2:
        raise SteertimeError("--alternate changes every second member of --seeds K; add --seeds")
    pairs = [
        f"{k}={v}"
        for k, v in [
            ("model.name", model),
            ("train.seq_len", seq_len),
            ("train.epochs", epochs),
            ("train.batch_size", batch_size),
            ("optim.lr", lr),
            ("data.outputs", outputs),
            ("data.cache", data_),
        ]
        if v is not None
    ]
    if resume:
        if out is None:
            raise SteertimeError("--resume needs --out RUN")
        if config is not None:
            raise SteertimeError("--resume continues the run's own config; drop --config")
        # options given with --resume are compared with the run's config: a change that
        # would mix two runs is refused, naming it; a safe one (more epochs) is applied
        if seeds > 1:
            cfg, safe = recipe_of(out, pairs + list(set_)), []
        else:
            cfg, safe = resume_config(out, pairs + list(set_))
        for line in safe:
            console.print(f"resuming with {line}", highlight=False)
    else:
        cfg = load_config(config) if config else TrainConfig()
        cfg = apply_overrides(cfg, pairs + list(set_))
        if out is not None:
            cfg.out = str(out)
        if not cfg.data.cache or not cfg.out:
            raise SteertimeError("train needs --data CACHE and --out RUN (or a --config with both)")
    if seeds > 1:
        run = train_members(cfg, seeds, resume, pairs + list(set_), jobs, alternate)
    else:
        run = run_training(cfg, resume=resume)
    console.print(f"run written to {run} (best: {run / 'checkpoints' / 'best'})")
    if cost := training_cost(run):
        console.print(describe(run.name, cost), highlight=False)


@app.command()
def tune(
    data_: Path = typer.Option(..., "--data", help="Prepared cache."),
    model: str = typer.Option(None, help="Model to tune [default: --config's, else cnn_lstm]."),
    trials: int = typer.Option(20, help="Trials to run now (added to the study)."),
    storage: str = typer.Option(
        "sqlite:///study.db", help="Optuna storage URL (shared DB for many machines)."
    ),
    study: str = typer.Option("steertime", help="Study name: the same name resumes it."),
    out: Path = typer.Option(Path("tune"), "--out", "-o", help="Trial runs and best_config.yaml."),
    config: Path = typer.Option(None, help="Base config the search starts from."),
    set_: list[str] = typer.Option([], "--set", help="Base overrides: section.key=value."),
    seed: int = typer.Option(
        None,
        help="Sampler seed [default: a fresh one, so workers sharing a study never propose "
        "the same trials].",
    ),
    seeds: int = typer.Option(
        1,
        help="Training seeds per trial, scored by their mean: a single seed's score moves "
        "as much as configs differ; K seeds cut that noise by sqrt(K) for K times the time.",
    ),
) -> None:
    """Search learning rate, hidden size, seq_len, dropout, clipping and optimiser with Optuna."""
    from steertime.train import TrainConfig, apply_overrides, load_config
    from steertime.train.tune import tune as run_tune

    base = load_config(config) if config else TrainConfig()
    model = model or (base.model["name"] if config else "cnn_lstm")
    base = apply_overrides(base, [f"model.name={model}", *set_])
    base.data.cache = str(data_)
    r = run_tune(base, trials, storage, study, out, seed=seed, seeds=seeds)
    console.print(
        f"study {r['study']}: {r['trials']} trials ({r['complete']} complete, "
        f"{r['pruned']} pruned, sampler seed {r['seed']}); best val RMSE {r['best_value']:.4g} "
        f"with {r['best_params']}"
    )
    console.print(
        f"best config: {r['best_config']}  →  steertime train --config {r['best_config']} --out RUN"
    )
