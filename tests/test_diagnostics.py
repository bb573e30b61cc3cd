"""Diagnostics: gradient flow through time on real frames, and the memory task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import Cache
from steertime.diagnostics import gradient_through_time, memory_horizon, memory_task
from steertime.errors import SteertimeError
from steertime.models import create_model
from tests.conftest import small_train_config


def test_memory_horizon_by_hand():
    norms = np.array([1e-6, 1e-4, 1e-2, 1.0])  # index -1 is step T
    assert memory_horizon(norms) == 2  # 1e-4, two steps back, is the first below 1e-3
    assert memory_horizon(np.ones(5)) == 5


def test_gradient_fades_back_through_time_on_real_frames(tiny_cache):
    torch.manual_seed(0)
    m = create_model("cnn_rnn", rnn="rnn", n_outputs=1)
    g = gradient_through_time(m, Cache.open(tiny_cache), length=30, n_seq=2)
    assert g.shape == (30,) and np.all(np.isfinite(g))
    assert g[-1] > 0 and g[0] < 1e-2 * g[-1]  # a vanilla RNN forgets fast


def test_a_temporal_convolution_is_traced_through_its_frames_and_stops_at_its_window(
    tiny_cache,
):
    torch.manual_seed(0)
    m = create_model("cnn_tcn", layers=3, n_outputs=1)  # 1 + 2 * (1 + 2 + 4) = 15 frames
    g = gradient_through_time(m, Cache.open(tiny_cache), length=30, n_seq=2)
    assert np.all(g[-15:] > 0) and np.all(g[:-15] == 0)
    assert memory_horizon(g) == 15


def test_diagnose_cli_writes_plot(tiny_cache, tmp_path):
    r = CliRunner().invoke(
        app,
        [
            "diagnose",
            "--data",
            str(tiny_cache),
            "--length",
            "20",
            "--sequences",
            "1",
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "gradient_flow.png").is_file() and "lstm (untrained)" in r.output
    assert "tcn (untrained)" in r.output and "attn (untrained)" in r.output


def test_lstm_remembers_where_rnn_cannot():
    """The long-term-dependency lesson: a cue 30 steps back."""
    assert memory_task("lstm", 30, steps=400).accuracy > 0.95
    assert memory_task("rnn", 30, steps=400).accuracy < 0.65


def test_a_temporal_convolution_remembers_only_inside_its_window():
    # 31 steps: a cue 30 steps back is inside the window, 40 steps back it cannot be seen
    assert memory_task("tcn", 30, steps=300).accuracy > 0.95
    assert abs(memory_task("tcn", 40, steps=300).accuracy - 0.5) < 0.07
    with pytest.raises(SteertimeError, match="cell must be one of rnn, gru, lstm, tcn, attn"):
        memory_task("transformer", 5)


def test_attention_looks_the_cue_up_inside_its_window_only():
    # two blocks of 16 steps: the same 31-step window as the TCN, read by content
    assert memory_task("attn", 30, steps=150).accuracy > 0.95
    assert abs(memory_task("attn", 40, steps=150).accuracy - 0.5) < 0.07


def test_training_warnings_and_detailed_logging(tiny_cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from steertime.train import train

    cfg = small_train_config(
        tiny_cache,
        tmp_path / "run",
        "train.epochs=4",
        "model.hidden=8",
        "model.feat_dim=8",
        "optim.lr=1e-12",  # not learning, and still a valid value
        "optim.clip_norm=1e-9",
        "train.diagnostics=true",
        "train.patience=100",
    )
    run = train(cfg, progress=False)
    text = (run / "warnings.txt").read_text()
    assert "exceeded optim.clip_norm" in text and "optim.lr" in text
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert any(t.startswith("grad_norm/") for t in tags)
    assert any(t.startswith("update_ratio/") for t in tags)
    assert any(t.startswith("saturated/") for t in tags)


def test_monitor_judges_progress_by_window_means():
    from torch import nn

    from steertime.train.monitor import WINDOW, TrainingMonitor

    flat = TrainingMonitor(nn.Linear(2, 1), None, 1.0, detailed=False)
    rng = np.random.default_rng(0)
    for step in range(2 * WINDOW):
        flat.after_step(step, 1.0 + 0.1 * rng.normal())  # noisy but not improving
    assert any("has not moved" in m for m in flat.messages)
    learning = TrainingMonitor(nn.Linear(2, 1), None, 1.0, detailed=False)
    for step in range(4 * WINDOW):
        learning.after_step(step, 1.0 / (1 + step / 10) + 0.01 * rng.normal())
    assert learning.messages == []
    zero = TrainingMonitor(nn.Linear(2, 1), None, 1.0, detailed=False)
    zero.after_backward(0, 0.0, 1e-3)
    assert "all gradients are zero" in zero.messages[0]


def test_a_run_whose_core_was_changed_is_named_by_it():
    from steertime.diagnostics.report import _described

    assert _described("cnn_lstm", {"rnn": "tcn"}) == "cnn_lstm (rnn=tcn)"
    assert _described("cnn_lstm", {"rnn": "lstm"}) == "cnn_lstm"
    assert _described("pilotnet", {}) == "pilotnet"
