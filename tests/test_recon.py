"""Reconstruction (`train.recon_weight`): a training-only head redraws each frame's coarse
grey thumbnail from its features; inference and export never run it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.errors import SteertimeError
from steertime.train import train
from tests.conftest import small_train_config


def _cfg(cache, out, *overrides):
    return small_train_config(cache, out, "train.threads=1", "model.name=cnn_lstm", *overrides)


def test_the_recon_loss_is_the_mse_of_the_head_against_standardised_block_means():
    from steertime.models import create_model
    from steertime.train.step import StepLoss

    torch.manual_seed(0)
    model = create_model("cnn_lstm", n_outputs=1, hidden=8, feat_dim=8, recon_outputs=48)
    frames = torch.randint(0, 255, (2, 3, 66, 200, 3), dtype=torch.uint8)
    frames[1, 2] = 7  # a blank frame: zero spread, and still a finite target
    target, state = torch.randn(2, 3, 1), model.init_state(2)
    plain, _ = StepLoss(model, [1.0], 0, 0.5, skip=1)(frames, target, state)
    recon = StepLoss(model, [1.0], 0, 0.5, skip=1, recon=(0.25, (6, 8), 0))
    with_recon, _ = recon(frames, target, state)
    # by hand: grey = mean of RGB, 11x25-pixel block means, each thumbnail standardised
    grey = frames.numpy().astype(np.float64).mean(-1)  # (B, T, 66, 200)
    thumb = grey.reshape(2, 3, 6, 11, 8, 25).mean(axis=(3, 5)).reshape(2, 3, 48)
    thumb = (thumb - thumb.mean(-1, keepdims=True)) / (thumb.std(-1, ddof=1, keepdims=True) + 2)
    assert np.allclose(thumb[1, 2], 0)
    feats, _ = model.encode(frames, state)
    pred = model.recon_head(feats).detach().numpy()
    want = 0.25 * ((pred - thumb)[:, 1:] ** 2).mean()  # the burn-in frame is not scored
    assert float((with_recon - plain).detach()) == pytest.approx(want, rel=1e-4)


def test_a_recon_lead_redraws_a_later_frame_from_the_memorys_output():
    from steertime.models import create_model
    from steertime.train.step import StepLoss

    torch.manual_seed(0)
    model = create_model(
        "cnn_lstm", n_outputs=1, hidden=8, feat_dim=8, recon_outputs=48, recon_memory=True
    )
    assert model.recon_head.in_features == model.config.hidden  # the memory's width
    frames = torch.randint(0, 255, (2, 5, 66, 200, 3), dtype=torch.uint8)
    target, state = torch.randn(2, 5, 1), model.init_state(2)
    plain, plain_state = StepLoss(model, [1.0], 0, 0.5, skip=1)(frames, target, state)
    lead2 = StepLoss(model, [1.0], 0, 0.5, skip=1, recon=(0.5, (6, 8), 2))
    loss, new_state = lead2(frames, target, state)
    assert torch.equal(new_state["h"], plain_state["h"])  # the state is the core's
    grey = frames.numpy().astype(np.float64).mean(-1)
    thumb = grey.reshape(2, 5, 6, 11, 8, 25).mean(axis=(3, 5)).reshape(2, 5, 48)
    thumb = (thumb - thumb.mean(-1, keepdims=True)) / (thumb.std(-1, ddof=1, keepdims=True) + 2)
    feats, _ = model.encode(frames, state)
    _, _, memory = model.core_with_memory(feats, state)
    pred = model.recon_head(memory).detach().numpy()  # step t's memory -> frame t+2
    want = 0.5 * ((pred[:, :3] - thumb[:, 2:])[:, 1:] ** 2).mean()  # steps 1 and 2 scored
    assert float((loss - plain).detach()) == pytest.approx(want, rel=1e-4)
    loss.backward()  # the term reaches the memory and the encoder
    assert model.rnn.weight_hh_l0.grad.abs().sum() > 0
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("lead", [0, 3])
def test_a_run_with_recon_trains_the_head_and_streams_and_exports_without_it(
    tiny_cache, tmp_path, lead
):
    from steertime.stream import OnnxPredictor, Predictor, export_onnx

    run = train(
        _cfg(
            tiny_cache,
            tmp_path / "r",
            "train.recon_weight=0.5",
            "train.recon_grid=6,8",
            f"train.recon_lead={lead}",
        ),
        progress=False,
    )
    a = Predictor.from_run(run)
    assert a.model.config.recon_outputs == 48
    assert a.model.config.recon_memory == (lead > 0)
    # A plain run of the same seed has no head, and another encoder: the reconstruction
    # moved the encoder under the head.
    plain = Predictor.from_run(train(_cfg(tiny_cache, tmp_path / "p"), progress=False))
    assert plain.model.recon_head is None
    assert not torch.allclose(a.model.encoder.net[0].weight, plain.model.encoder.net[0].weight)
    folder = export_onnx(run, tmp_path / "onnx")
    b = OnnxPredictor(folder)
    for i in range(4):
        f = np.random.default_rng(i).integers(0, 255, (160, 320, 3), dtype=np.uint8)
        pa, pb = a.step(f, 0.1 * i), b.step(f, 0.1 * i)
        assert abs(pa["steering"] - pb["steering"]) < 1e-4


def test_recon_settings_that_cannot_train_are_refused_before_anything_is_written(
    tiny_cache, tmp_path
):
    with pytest.raises(SteertimeError, match="train.recon_weight must be >= 0, got -1"):
        train(_cfg(tiny_cache, tmp_path / "a", "train.recon_weight=-1"))
    with pytest.raises(SteertimeError, match=r"train.recon_grid must be \[rows, columns\]"):
        train(_cfg(tiny_cache, tmp_path / "b", "train.recon_weight=1", "train.recon_grid=0,4"))
    cfg = _cfg(tiny_cache, tmp_path / "c", "train.recon_weight=1")
    cfg.model = {"name": "pilotnet"}
    with pytest.raises(SteertimeError, match="pilotnet, which has no reconstruction head"):
        train(cfg)
    with pytest.raises(SteertimeError, match="0 over a features store"):
        train(_cfg(tiny_cache, tmp_path / "d", "train.recon_weight=1", f"data.features={tmp_path}"))
    in_chunk = r"recon_lead must be in 0..4 \(a later frame of the same train.seq_len=5 chunk"
    with pytest.raises(SteertimeError, match=in_chunk):
        train(_cfg(tiny_cache, tmp_path / "e", "train.recon_weight=1", "train.recon_lead=10"))
    with pytest.raises(SteertimeError, match="recon_lead must be 0 without train.recon_weight"):
        train(_cfg(tiny_cache, tmp_path / "f", "train.recon_lead=3"))
    cfg = _cfg(tiny_cache, tmp_path / "g", "train.recon_weight=1", "train.recon_lead=3")
    cfg.model = {"name": "cnn_lstm_ar"}
    with pytest.raises(SteertimeError, match="cnn_lstm_ar, which feeds its outputs back"):
        train(cfg)
    assert not any((tmp_path / n).exists() for n in "abcdefg")
