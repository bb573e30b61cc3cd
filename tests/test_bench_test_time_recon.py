"""benchmarks/test_time_recon.py adapts a reconstruction run's encoder to unlabelled frames:
the loss it follows must fall, only the encoder may move (the memory and the steering head
are what the labels taught), and the source run must be left as it was."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from steertime.data.cache import Cache
from steertime.errors import SteertimeError
from steertime.models.checkpoint import load_model
from steertime.train import train
from tests.conftest import BENCH, bench_module, small_train_config


def _run(cache, out, *extra):
    cfg = small_train_config(cache, out, "train.threads=1", "model.name=cnn_lstm", *extra)
    return train(cfg, progress=False)


def test_adapting_lowers_the_reconstruction_loss_and_moves_only_the_encoder(tiny_cache, tmp_path):
    m = bench_module("test_time_recon")
    run = _run(tiny_cache, tmp_path / "r", "train.recon_weight=1", "train.recon_grid=6,8")
    parts = m.held_out_frames(Cache.open(tiny_cache), "test")
    assert sum(len(p) for p in parts) > 10
    state, losses = m.adapt(run, parts, steps=30, lr=1e-3, seq_len=5, batch=4)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    before = load_model(run)[0].state_dict()
    moved = {k for k, v in state.items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith(("encoder.", "project.")) for k in moved)


def test_the_script_writes_an_adapted_copy_and_leaves_the_run(tiny_cache, tmp_path):
    run = _run(tiny_cache, tmp_path / "r", "train.recon_weight=1", "train.recon_grid=6,8")
    weights = run / "checkpoints" / "best" / "model.safetensors"
    original = weights.read_bytes()
    out = tmp_path / "adapted"
    cmd = [sys.executable, str(BENCH / "test_time_recon.py"), str(run), "--data", str(tiny_cache)]
    cmd += ["--steps", "3", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert weights.read_bytes() == original
    assert (out / "checkpoints" / "best" / "model.safetensors").read_bytes() != original
    assert not list(tmp_path.glob(".adapt-*"))  # the temporary folder was renamed away
    load_model(out)  # a run `steertime evaluate` can score
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


def test_a_run_without_the_head_is_refused(tiny_cache, tmp_path):
    m = bench_module("test_time_recon")
    run = _run(tiny_cache, tmp_path / "p")
    with pytest.raises(SteertimeError, match="not trained with train.recon_weight"):
        m.adapt(run, m.held_out_frames(Cache.open(tiny_cache), "test"), steps=1, lr=1e-4)
