"""Auxiliary targets (`train.aux_leads`): a training-only head predicts the outputs some
frames later from each frame's features; inference and export never run it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.errors import SteertimeError
from steertime.train import train
from tests.conftest import small_train_config


def _cfg(cache, out, *overrides):
    return small_train_config(
        cache,
        out,
        "train.threads=1",
        "model.name=cnn_lstm",
        "data.outputs=steering,speed",
        *overrides,
    )


def test_aux_targets_read_each_lead_past_the_target_clamped_and_mirrored(tiny_cache):
    from steertime.data import Cache
    from steertime.train.batches import BatchReader, Chunk

    cache = Cache.open(tiny_cache)
    d = cache.drives[0]
    steer, speed = (np.asarray(d.signals[k], np.float32) for k in ("steering", "speed"))
    reader = BatchReader(cache, ["steering", "speed"], 5, 3, lead=1, aux_leads=(3, 6))
    chunks = [Chunk(0, 10, True), Chunk(0, d.n - 5, True), Chunk(0, 10, True, flip=True)]
    _, target, _ = reader.read(chunks)
    aux = reader.aux_targets  # (B, T, L, K)
    assert aux.shape == (3, 5, 2, 2)
    assert (target[0, :, 0] == steer[11:16]).all()
    assert (aux[0, :, 0, 0] == steer[14:19]).all()  # lead 1 + 3
    assert (aux[0, :, 1, 0] == steer[17:22]).all()  # lead 1 + 6
    assert (aux[0, :, 1, 1] == speed[17:22]).all()
    # past the drive's end the last label repeats, as for the target itself
    want = np.minimum(np.arange(d.n - 5 + 7, d.n + 7), d.n - 1)
    assert (aux[1, :, 1, 0] == steer[want]).all()
    # a mirrored sequence's steering is negated in every lead; speed is not
    assert (aux[2, :, 0, 0] == -steer[14:19]).all()
    assert (aux[2, :, 0, 1] == speed[14:19]).all()


def test_the_aux_loss_is_the_weighted_mse_of_the_head_on_the_features():
    from steertime.models import create_model
    from steertime.train.step import StepLoss

    torch.manual_seed(0)
    model = create_model("cnn_lstm", n_outputs=2, hidden=8, feat_dim=8, aux_outputs=4)
    loss = StepLoss(model, [3.0, 1.0], 0, 0.5, skip=0, aux_weight=0.5)
    frames = torch.randint(0, 255, (2, 3, 66, 200, 3), dtype=torch.uint8)
    target = torch.randn(2, 3, 2)
    aux = torch.randn(2, 3, 2, 2)  # (B, T, L, K)
    state = model.init_state(2)
    plain, _ = loss(frames, target, state)
    with_aux, _ = loss(frames, target, state, None, aux)
    feats, _ = model.encode(frames, state)
    pred = model.aux_head(feats).view(2, 3, 2, 2)
    per_output = (pred - aux).square().mean(dim=(0, 1, 2))
    want = 0.5 * (per_output * torch.tensor([0.75, 0.25])).sum()
    assert float((with_aux - plain).detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_a_run_with_aux_leads_trains_the_head_and_streams_and_exports_without_it(
    tiny_cache, tmp_path
):
    from steertime.stream import OnnxPredictor, Predictor, export_onnx

    run = train(_cfg(tiny_cache, tmp_path / "r", "train.aux_leads=4,8"), progress=False)
    a = Predictor.from_run(run)
    assert a.model.config.aux_outputs == 2 * len(a.layout.names) == 4  # two leads, two outputs
    # The same seed with the auxiliary loss weighted 0: the head never moves from its
    # initialisation. With weight 0.5 it learnt, and so did the encoder under it.
    idle = train(
        _cfg(tiny_cache, tmp_path / "w0", "train.aux_leads=4,8", "train.aux_weight=0"),
        progress=False,
    )
    b = Predictor.from_run(idle)
    assert not torch.allclose(a.model.aux_head.weight, b.model.aux_head.weight)
    enc_a, enc_b = (p.model.encoder.net[0].weight for p in (a, b))
    assert not torch.allclose(enc_a, enc_b)
    frames = [
        np.random.default_rng(i).integers(0, 255, (160, 320, 3), dtype=np.uint8) for i in range(4)
    ]
    folder = export_onnx(run, tmp_path / "onnx")
    b = OnnxPredictor(folder)
    for i, f in enumerate(frames):
        pa, pb = a.step(f, 0.1 * i), b.step(f, 0.1 * i)
        assert abs(pa["steering"] - pb["steering"]) < 1e-4


def test_aux_leads_that_cannot_train_are_refused_before_anything_is_written(tiny_cache, tmp_path):
    with pytest.raises(SteertimeError, match=r"train.aux_leads must be frames > 0, got \[0\]"):
        train(_cfg(tiny_cache, tmp_path / "a", "train.aux_leads=0"))
    cfg = _cfg(tiny_cache, tmp_path / "b", "train.aux_leads=5")
    cfg.model = {"name": "pilotnet"}
    with pytest.raises(SteertimeError, match="pilotnet, which has no auxiliary head"):
        train(cfg)
    with pytest.raises(SteertimeError, match="empty with train.bins"):
        train(_cfg(tiny_cache, tmp_path / "c", "train.bins=11", "train.aux_leads=5"))
    with pytest.raises(SteertimeError, match="train.aux_weight must be >= 0"):
        train(_cfg(tiny_cache, tmp_path / "d", "train.aux_leads=5", "train.aux_weight=-1"))
    assert not any((tmp_path / n).exists() for n in "abcd")
    # labels past the guard between the splits would be validation labels
    with pytest.raises(SteertimeError, match=r"data.lead \+ max\(train.aux_leads\) = 11"):
        train(_cfg(tiny_cache, tmp_path / "e", "train.aux_leads=5,11"))
