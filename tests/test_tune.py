"""Hyperparameter search against a real SQLite file: resumable, writes a usable config."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.errors import SteertimeError
from steertime.train import load_config


def test_tune_resumes_and_best_config_trains(tiny_cache, tmp_path):
    db = tmp_path / "study.db"
    args = [
        "tune",
        "--data",
        str(tiny_cache),
        "--model",
        "cnn_gru",
        "--storage",
        f"sqlite:///{db}",
        "--study",
        "t",
        "--out",
        str(tmp_path / "tune"),
        "--set",
        "train.epochs=2",
        "--set",
        "train.max_steps=6",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.threads=2",
        "--set",
        "model.feat_dim=8",
    ]
    r = CliRunner().invoke(app, [*args, "--trials", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*args, "--trials", "1"])
    assert r.exit_code == 0, r.output
    assert "3 trials" in r.output
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 3
    best = tmp_path / "tune" / "best_config.yaml"
    cfg = load_config(best)
    assert cfg.model["name"] == "cnn_gru" and cfg.data.cache == str(tiny_cache)
    lo, hi = (1e-4, 3e-3) if cfg.optim.name == "adam" else (5e-3, 0.1)
    assert lo <= cfg.optim.lr <= hi and cfg.train.seq_len in (5, 10, 20)
    r = CliRunner().invoke(app, ["train", "--config", str(best), "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "checkpoints" / "best" / "model.safetensors").is_file()


def test_resumed_and_parallel_workers_propose_new_trials(tiny_cache, tmp_path, monkeypatch):
    """A fixed sampler seed used to replay the study's first trials on every resume (and
    two workers started together trained the same configs): each start now samples anew."""
    from steertime.train import TrainConfig, apply_overrides
    from steertime.train import tune as tune_mod

    monkeypatch.setattr(tune_mod, "train", lambda cfg, **kw: (_ for _ in ()).throw(_Stop(cfg)))
    base = apply_overrides(TrainConfig(), ["model.name=cnn_gru"])
    base.data.cache = str(tiny_cache)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proposed = []
    for seed in (7, 7, None, None):  # a resume with the same seed, then two fresh workers
        try:
            tune_mod.tune(base, 1, storage, "t", tmp_path / "tune", seed=seed)
        except _Stop as stop:
            proposed.append((stop.cfg.optim.lr, stop.cfg.model.get("dropout")))
    assert len(proposed) == 4 and len(set(proposed)) == 4, proposed


class _Stop(Exception):
    def __init__(self, cfg):
        self.cfg = cfg


def test_pruning_waits_until_the_model_learns(tiny_cache, tmp_path, monkeypatch):
    """Epochs at predict-the-mean rank nothing (every trial's RMSE is the label spread
    plus noise): no trial is pruned there; one worse once learning is, and so is one
    still at the mean after half the epochs."""
    import optuna

    from steertime.train import TrainConfig, apply_overrides
    from steertime.train import tune as tune_mod

    calls = []

    def fake_train(cfg, progress=False, on_epoch=None):
        k = len(calls)
        calls.append(k)
        best = float("inf")
        for epoch in range(cfg.train.epochs):
            learning = epoch >= 4 and k != 6  # trial 6 never leaves the mean
            # at the mean: the trials' noise is as large as the learnt differences
            score = (0.9 if k == 5 else 0.3) if learning else 0.5 + 0.05 * (k % 3)
            best = min(best, score)
            on_epoch(epoch, {"score": score, "best": best, "at_mean": not learning})
        return tmp_path / f"run{k}"

    monkeypatch.setattr(tune_mod, "train", fake_train)
    monkeypatch.setattr(tune_mod, "read_run_meta", lambda run: type("M", (), {"score": 0.3})())
    base = apply_overrides(TrainConfig(), ["model.name=cnn_gru", "train.epochs=8"])
    base.data.cache = str(tiny_cache)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tune_mod.tune(base, 7, storage, "p", tmp_path / "tune", seed=0)
    trials = optuna.load_study(study_name="p", storage=storage).trials
    S = optuna.trial.TrialState
    assert [t.state for t in trials] == [S.COMPLETE] * 5 + [S.PRUNED] * 2
    assert [len(t.intermediate_values) for t in trials[5:]] == [5, 5]  # pruned at epoch 4


def test_seeds_per_trial_score_their_mean_and_report_each_seed(tiny_cache, tmp_path, monkeypatch):
    import optuna

    from steertime.train import TrainConfig, apply_overrides
    from steertime.train import tune as tune_mod

    trained = []

    def fake_train(cfg, progress=False, on_epoch=None):
        trained.append((cfg.train.seed, cfg.out))
        for epoch in range(cfg.train.epochs):
            on_epoch(epoch, {"score": 0.4, "best": 0.4, "at_mean": False})
        return Path(cfg.out)

    score = {"seed3": 0.30, "seed4": 0.36}
    monkeypatch.setattr(tune_mod, "train", fake_train)
    monkeypatch.setattr(
        tune_mod,
        "read_run_meta",
        lambda run: type("M", (), {"score": score[run.parent.parent.name]})(),
    )
    base = apply_overrides(TrainConfig(), ["model.name=cnn_gru", "train.epochs=3", "train.seed=3"])
    base.data.cache = str(tiny_cache)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    r = tune_mod.tune(base, 1, storage, "s", tmp_path / "tune", seed=0, seeds=2)
    folder = tmp_path / "tune" / "trial_0000"
    assert trained == [
        (3, str(folder / "members" / "seed3")),
        (4, str(folder / "members" / "seed4")),
    ]
    assert r["best_value"] == pytest.approx(0.33)
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert sorted(trial.intermediate_values) == list(range(6))  # seed k's epochs at k*3 + e
    assert trial.user_attrs["seed_scores"] == [0.30, 0.36]
    with pytest.raises(SteertimeError, match="--seeds"):
        tune_mod.tune(base, 1, storage, "s", tmp_path / "tune", seeds=0)
