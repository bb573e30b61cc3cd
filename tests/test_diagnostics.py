"""Diagnostics: gradient flow through time on real frames, and the memory task."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import Cache
from steertime.diagnostics import gradient_through_time, memory_horizon, memory_task
from steertime.models import create_model


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


def test_lstm_remembers_where_rnn_cannot():
    """The long-term-dependency lesson: a cue 30 steps back."""
    assert memory_task("lstm", 30, steps=400).accuracy > 0.95
    assert memory_task("rnn", 30, steps=400).accuracy < 0.65
