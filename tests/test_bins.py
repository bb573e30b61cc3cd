"""`train.bins`: a categorical head (HL-Gauss cross-entropy) whose output is the softmax
expectation — trained, streamed, exported, evaluated and averaged like any run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.data import Cache
from steertime.errors import SteertimeError
from steertime.evaluate.run import evaluate
from steertime.models import OutputLayout, create_model
from steertime.models.checkpoint import read_run_meta
from steertime.models.ensemble import build_ensemble
from steertime.models.layout import expectation
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from steertime.train import train
from steertime.train.step import StepLoss
from tests.conftest import small_train_config


def _layout(bins: int = 5) -> OutputLayout:
    return OutputLayout(
        names=["steering", "speed"],
        mean=[0.0, 10.0],
        std=[1.0, 2.0],
        low=[-1.0, 6.0],
        high=[1.0, 14.0],
        bins=bins,
        bin_low=[-1.0, -2.0],
        bin_high=[1.0, 2.0],
    )


def test_expectation_agrees_between_numpy_and_torch():
    lay = _layout()
    y = np.random.default_rng(0).normal(size=(3, 4, 10)).astype(np.float32)
    a = lay.means(y)
    b = lay.means(torch.tensor(y)).numpy()
    assert a.shape == (3, 4, 2)
    assert np.allclose(a, b, atol=1e-6)
    # One very confident bin: the expectation is that bin's value, and physical units follow.
    y1 = np.full((10,), -50.0, np.float32)
    y1[4], y1[5 + 2] = 50.0, 50.0  # steering's last bin (+1), speed's middle bin (0)
    assert np.allclose(lay.physical(y1), [1.0, 10.0], atol=1e-5)


def test_hl_gauss_loss_is_minimal_where_the_expectation_is_the_label():
    lay = _layout(bins=21)
    model = create_model("pilotnet", n_outputs=lay.n_model_outputs, height=66, width=200)
    loss = StepLoss(model, [1.0, 1.0], steer=0, lam=0.5, skip=0, bin_centers=lay.bin_centers())
    t = torch.tensor([[[0.33, -1.7]]])  # (B, T, K), between bins, normalised units
    logits = torch.zeros(1, 1, 42, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        loss._mse(logits, t).backward()
        opt.step()
    # The fitted distribution's expectation lands on the label (the Gaussian target keeps
    # the position between bins), and the loss has a gradient for every logit.
    got = expectation(logits.detach(), lay.bin_centers())
    assert torch.allclose(got, t, atol=0.02), got
    # Labels beyond the range are clamped to its ends, not lost.
    far = loss._mse(torch.zeros(1, 1, 42), torch.tensor([[[9.0, -9.0]]]))
    assert torch.isfinite(far)


def test_layout_refuses_bins_without_a_range():
    with pytest.raises(ValueError, match="bins"):
        OutputLayout(names=["steering"], mean=[0.0], std=[1.0], bins=5)
    with pytest.raises(ValueError, match="bins"):
        OutputLayout(names=["s"], mean=[0.0], std=[1.0], bins=1, bin_low=[0], bin_high=[1])


@pytest.fixture(scope="module")
def bins_run(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("bins") / "run"
    cfg = small_train_config(
        tiny_cache, out, "model.name=cnn_lstm", "train.bins=15", "train.epochs=2"
    )
    cfg.data.outputs = ["steering", "speed"]
    return train(cfg, progress=False)


def test_bins_run_streams_exports_and_evaluates(bins_run, tiny_cache, tmp_path):
    lay = read_run_meta(bins_run).layout
    assert lay.bins == 15 and lay.n_model_outputs == 30
    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 8)
    a, b = Predictor.from_run(bins_run), OnnxPredictor(export_onnx(bins_run, tmp_path / "x"))
    for f in frames:
        x, y = a.layout.parse(a._run(f)), b.layout.parse(b._run(f))
        assert set(x) >= {"steering", "speed"} and "steering_std" not in x
        for k in ("steering", "speed"):
            assert lay.low[lay.index(k)] <= x[k] <= lay.high[lay.index(k)]
            assert abs(x[k] - y[k]) < 1e-4 * max(1.0, abs(x[k])), (k, x[k], y[k])
    result, _, _ = evaluate(bins_run, tiny_cache, split="val")
    m = result["outputs"]["steering"]["models"][result["primary"]]
    assert np.isfinite(m["rmse"])


def test_ensemble_averages_expectations_of_categorical_members(bins_run, tiny_cache, tmp_path):
    out = tmp_path / "ens"
    build_ensemble([bins_run, bins_run], out)
    frames = Cache.open(tiny_cache).drives[0].read_frames(0, 6)
    one, two = Predictor.from_run(bins_run), Predictor.from_run(out)
    for f in frames:
        x, y = one.layout.parse(one._run(f)), two.layout.parse(two._run(f))
        assert abs(x["steering"] - y["steering"]) < 1e-5


@pytest.mark.parametrize(
    "extra, match",
    [
        (["train.spread=true"], "train.spread"),
        (["model.missing_input=true", "model.hold_on_missing=true"], "hold_on_missing"),
        (["model.name=komanda"], "feeds"),
        (["train.bins=1"], ">= 2"),
        (["data.clip_outputs=false"], "clip_outputs=true"),
    ],
)
def test_bins_refuses_what_it_cannot_do(tiny_cache, tmp_path, extra, match):
    cfg = small_train_config(tiny_cache, tmp_path / "r", "train.bins=9", *extra)
    with pytest.raises(SteertimeError, match=match):
        train(cfg, progress=False)
