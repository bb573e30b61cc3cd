"""`steertime tune`: hyperparameter search with Optuna ("stochastic graduate student
descent", automated).

Each trial trains with sampled hyperparameters and reports its best validation steering
RMSE so far after every epoch; the median pruner stops a trial whose best is worse than
the median of the others' at the same epoch (see PRUNE_AFTER_*). The study lives in an
Optuna storage: the same `--storage` and `--study` resume it, and a shared database URL
(e.g. PostgreSQL) lets several machines work on one study. The best trial's full config is
written where `train --config` reads it.

With `seeds` K > 1 each trial trains K seeds of its config (train.seed, +1, ...) and
scores their mean best validation RMSE: on a real tub one seed's score moves by as much as
the configs differ (the top five of 24 single-seed trials sat inside the recipe's own two
seeds), so a single-seed search ranks luck. K seeds halve that noise at K = 4, for K times
the training per trial. Each seed's epochs report as steps `k * epochs + epoch`, so the
pruner compares every seed with the other trials' same seed.
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path

import numpy as np
import yaml

from steertime.atomic import write_text
from steertime.errors import SteertimeError
from steertime.models.checkpoint import read_run_meta
from steertime.train.config import TrainConfig, apply_overrides
from steertime.train.loop import train
from steertime.train.members import member_configs


def sample(trial, base: TrainConfig) -> TrainConfig:
    """The search space: optimiser and learning rate, clipping, seq_len, dropout, hidden size."""
    cfg = copy.deepcopy(base)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    # Each optimiser its own range: Adam's steps are ~lr per weight whatever the gradient,
    # SGD's are lr x gradient (norm ~1 here), so SGD at Adam's rates never leaves the mean
    # (4 of 15 complete trials on a real tub, all 30 epochs) and above ~0.1 it blows up.
    lr = (
        trial.suggest_float("lr", 1e-4, 3e-3, log=True)
        if optimizer == "adam"
        else trial.suggest_float("sgd_lr", 5e-3, 0.1, log=True)
    )
    pairs = [
        f"optim.lr={lr}",
        f"optim.clip_norm={trial.suggest_float('clip_norm', 1.0, 50.0, log=True)}",
        f"optim.name={optimizer}",
        f"train.seq_len={trial.suggest_categorical('seq_len', [5, 10, 20])}",
        f"model.dropout={trial.suggest_float('dropout', 0.0, 0.3)}",
    ]
    if cfg.model["name"] != "pilotnet":
        pairs.append(f"model.hidden={trial.suggest_categorical('hidden', [32, 64, 128])}")
    return apply_overrides(cfg, pairs)


# When the median pruner may stop a trial. Every run starts at predict-the-mean for a few
# epochs, where the validation RMSE of all trials sits within noise of the same value;
# pruning on it there stopped 24 of 28 trials on a real tub at epoch 2, at random. So
# trials are compared on their best score so far (one epoch's score jumps by +-0.03), only
# after the first quarter of the epochs, only once 4 trials completed, and not while the
# training loss says the model has not started to learn — until half the epochs are
# spent: a trial still at the mean then (SGD on the tub, all 30 epochs) is behind.
PRUNE_AFTER_TRIALS = 4
PRUNE_AFTER_EPOCHS_SHARE = 4


def prunable(epoch: int, epochs: int, at_mean: bool) -> bool:
    """Whether the pruner may judge this epoch of a trial (see PRUNE_AFTER_*)."""
    return epoch >= max(1, epochs // PRUNE_AFTER_EPOCHS_SHARE) and (
        not at_mean or epoch >= epochs // 2
    )


def tune(
    base: TrainConfig,
    trials: int,
    storage: str,
    study_name: str,
    out: Path,
    seed: int | None = None,
    seeds: int = 1,
) -> dict:
    """Run `trials` more trials of the study; `seed` None draws a fresh sampler seed;
    `seeds` training seeds per trial, scored by their mean."""
    if seeds < 1:
        raise SteertimeError(f"--seeds must be >= 1, got {seeds}")
    import optuna

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNE_AFTER_TRIALS,
        ),
    )
    # A fixed sampler seed replays the same first (random) trials: two workers of one
    # study, or a resumed study, would train identical configs. The seed is therefore
    # fresh per worker unless given, and a given one is mixed with the trials already done.
    if seed is None:
        seed = secrets.randbits(32)
    mixed = np.random.SeedSequence([seed, len(study.trials)]).generate_state(1)[0]
    study.sampler = optuna.samplers.TPESampler(seed=int(mixed))

    def objective(trial) -> float:
        cfg = sample(trial, base)
        folder = out / f"trial_{trial.number:04d}"
        cfg.out = str(folder)
        trial.set_user_attr("config", cfg.to_dict())
        scores = []
        runs = member_configs(cfg, folder, seeds) if seeds > 1 else [cfg]
        for k, one in enumerate(runs):

            def report(epoch: int, metrics: dict, k: int = k) -> None:
                trial.report(metrics["best"], k * cfg.train.epochs + epoch)
                if prunable(epoch, cfg.train.epochs, metrics["at_mean"]) and trial.should_prune():
                    raise optuna.TrialPruned()

            run = train(one, progress=False, on_epoch=report)
            scores.append(float(read_run_meta(run / "checkpoints" / "best").score))
        trial.set_user_attr("seed_scores", scores)
        return float(np.mean(scores))

    study.optimize(objective, n_trials=trials, catch=())
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    write_text(out / "best_config.yaml", yaml.safe_dump(best.user_attrs["config"], sort_keys=False))
    return {
        "study": study_name,
        "trials": len(study.trials),
        "complete": len(done),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best_value": best.value,
        "best_params": best.params,
        "best_config": str(out / "best_config.yaml"),
        "seed": seed,
    }
