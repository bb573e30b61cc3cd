"""benchmarks/offline_mix.py scores averages of saved predictions: a mix must be the mean
of its members clipped to ±1 (what `steertime ensemble` predicts), and the greedy choice
of recipes for a fold must never look at that fold's frames, or its figure is a
selection on the test frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.conftest import bench_module


def _preds(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300  # three folds of 100 frames at 20 Hz
    y = rng.uniform(-1, 1, n)
    fold = np.repeat(["A", "B", "C"], 100)
    p = pd.DataFrame({"fold": fold, "true_steering": y, "t": np.tile(np.arange(100) / 20, 3)})
    for run in ("cnn_lstm", "cnn_lstm_s1"):
        p[f"{run}:steering"] = y + rng.normal(0, 0.3, n)
    # perfect on fold A, noisy elsewhere: it lowers the error pooled over all three folds,
    # not over B and C, so only a choice that saw A's frames takes it for A
    p["cnn_lstm_cheat:steering"] = np.where(fold == "A", y, y + rng.normal(0, 0.45, n))
    # a little better than the plain runs everywhere, and off the range (clipped)
    p["cnn_lstm_good:steering"] = y + rng.normal(0, 0.2, n)
    p.loc[0, "cnn_lstm_good:steering"] = 5.0
    return p


def test_a_mix_is_the_mean_of_its_clipped_members():
    m = bench_module("offline_mix")
    p = _preds()
    m.add_mix(p, "two", ["cnn_lstm_s1", "cnn_lstm_good"])
    want = np.clip(p["cnn_lstm_s1:steering"], -1, 1) + np.clip(p["cnn_lstm_good:steering"], -1, 1)
    assert np.allclose(p["two:steering"], want / 2)
    assert m.recipes(p) == {
        "cnn_lstm": ["cnn_lstm", "cnn_lstm_s1"],
        "cnn_lstm_cheat": ["cnn_lstm_cheat"],
        "cnn_lstm_good": ["cnn_lstm_good"],
    }


def test_the_greedy_choice_for_a_fold_never_sees_its_frames():
    m = bench_module("offline_mix")
    p = _preds()
    pool = {"cnn_lstm_cheat": ["cnn_lstm_cheat"], "cnn_lstm_good": ["cnn_lstm_good"]}
    pred, chosen = m.greedy(p, ["cnn_lstm", "cnn_lstm_s1"], pool, most=3)
    assert "cnn_lstm_cheat" not in chosen["A"]  # it fails on B and C, where A's choice is made
    assert chosen["A"][0] == "cnn_lstm_good"
    # fold A is scored with what B and C chose, not with the cheat
    runs = ["cnn_lstm", "cnn_lstm_s1"] + chosen["A"]
    a = (p.fold == "A").to_numpy()
    want = np.mean([np.clip(p[f"{r}:steering"], -1, 1) for r in runs], axis=0)[a]
    assert np.allclose(pred[a], want)
    assert not np.isnan(pred).any()
