"""`data.balance`: each training frame weighted by how rare its steering label is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.errors import SteertimeError
from steertime.models import OutputLayout, create_model
from steertime.train import train
from steertime.train.position import loss_is_share
from steertime.train.step import StepLoss
from steertime.train.targets import BALANCE_BINS, BALANCE_CAP, balance_weights
from tests.conftest import small_train_config

LAYOUT = OutputLayout(["steering"], [0.0], [1.0])


def _frame_weights(values, power, layout=LAYOUT):
    edges, w = balance_weights(layout, values, 0, power)
    z = (np.asarray(values) - layout.mean[0]) / layout.std[0]
    return edges, w, w[torch.bucketize(torch.tensor(z, dtype=torch.float32), torch.tensor(edges))]


def test_every_angle_bin_counts_alike_and_the_mean_weight_is_one():
    # 60% straight, 25% half lock, 15% full lock: power 1 gives each bin the same total
    values = np.r_[np.zeros(600), np.full(250, 0.5), np.ones(150)]
    _, w, per_frame = _frame_weights(values, 1.0)
    assert per_frame.mean().item() == pytest.approx(1.0, rel=1e-5)
    totals = {v: per_frame[values == v].sum().item() for v in (0.0, 0.5, 1.0)}
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-4)
    assert len(w) == BALANCE_BINS
    # the bins no training frame fell in take the cap: ten times the commonest bin's weight
    assert w.max() == pytest.approx(BALANCE_CAP * per_frame[values == 0].max().item(), rel=1e-5)
    _, _, half = _frame_weights(values, 0.5)  # power 0.5: rare angles count less than alike
    assert half[values == 1].sum() < half[values == 0].sum()


def test_the_cap_holds_for_a_very_rare_angle():
    values = np.r_[np.zeros(9990), np.ones(10)]  # 0.1% at full lock: 999x rarer
    _, _, per_frame = _frame_weights(values, 1.0)
    ratio = per_frame[values == 1][0] / per_frame[values == 0][0]
    assert ratio.item() == pytest.approx(BALANCE_CAP, rel=1e-5)
    assert per_frame.mean().item() == pytest.approx(1.0, rel=1e-5)


def test_the_loss_weighs_each_frame_by_its_label():
    torch.manual_seed(0)
    model = create_model("cnn_lstm", n_outputs=1, hidden=8)
    values = np.r_[np.zeros(90), np.ones(10)]
    edges, w = balance_weights(LAYOUT, values, 0, 1.0)
    plain = StepLoss(model, [1.0], 0, 0.5, 0)
    balanced = StepLoss(model, [1.0], 0, 0.5, 0, balance=(edges, w))
    y = torch.randn(2, 5, 1)
    t = torch.zeros(2, 5, 1)
    t[0, 2] = 1.0  # one rare frame
    err = (y - t).square()[..., 0]
    weight = torch.full((2, 5), float(w[0]))
    weight[0, 2] = float(w[-1])
    torch.testing.assert_close(balanced._mse(y, t), (err * weight).mean())
    torch.testing.assert_close(plain._mse(y, t), err.mean())
    assert not loss_is_share(_cfg_loop(), False, balanced=True)
    assert loss_is_share(_cfg_loop(), False)


def _cfg_loop():
    from steertime.train.config import LoopConfig

    return LoopConfig()


def test_a_balanced_run_trains_and_records_its_setting(tiny_cache, tmp_path):
    cfg = small_train_config(tiny_cache, tmp_path / "r", "data.balance=1", "data.flip=true")
    run = train(cfg, progress=False)
    assert "balance: 1.0" in (run / "config.yaml").read_text()
    assert (run / "checkpoints" / "best").is_dir()


@pytest.mark.parametrize("bad", ["-0.5", "3", "nan"])
def test_a_balance_out_of_range_is_refused_by_name(tiny_cache, tmp_path, bad):
    cfg = small_train_config(tiny_cache, tmp_path / "r", f"data.balance={bad}")
    with pytest.raises(SteertimeError, match=r"data.balance.*in \[0, 2\]"):
        cfg.validate()
