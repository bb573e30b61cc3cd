"""Two-stage training: a `cnn_lstm` started from a `pilotnet` run's encoder, frozen or not."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from steertime.errors import SteertimeError
from steertime.models import create_model
from steertime.models.checkpoint import load_model
from steertime.train import TrainConfig, apply_overrides, train
from steertime.train.warmstart import freeze, warm_start
from tests.conftest import small_train_config

TINY = ["train.threads=2", "train.batch_size=4", "train.seq_len=5", "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def pilotnet_run(tiny_cache, tmp_path_factory):
    cfg = apply_overrides(TrainConfig(), ["model.name=pilotnet", *TINY, "train.epochs=1"])
    cfg.data.cache, cfg.out = str(tiny_cache), str(tmp_path_factory.mktemp("pn") / "run")
    return train(cfg, progress=False)


def _weights(run, which="best"):
    return load_file(run / "checkpoints" / which / "model.safetensors")


def test_lstm_starts_from_pilotnets_encoder_and_keeps_it_frozen(
    pilotnet_run, tiny_cache, tmp_path, capsys
):
    cfg = small_train_config(
        tiny_cache,
        tmp_path / "lstm",
        f"train.init_from={pilotnet_run}",
        "train.freeze=encoder",
        "train.max_steps=3",
    )
    run = train(cfg, progress=False)
    pn, lstm = _weights(pilotnet_run), _weights(run, "last")
    enc = [k for k in pn if k.startswith("encoder.")]
    assert enc and all(torch.equal(pn[k], lstm[k]) for k in enc)  # copied, then not trained
    fresh = small_train_config(tiny_cache, tmp_path / "fresh", "train.max_steps=3")
    plain = _weights(train(fresh, progress=False), "last")
    assert not any(torch.equal(plain[k], lstm[k]) for k in enc)  # same seed, other start
    moved = [k for k in lstm if not k.startswith("encoder.") and not torch.equal(plain[k], lstm[k])]
    assert any(k.startswith("rnn.") for k in moved)  # the rest trained
    err = capsys.readouterr().err
    assert f"train.init_from={pilotnet_run} (pilotnet)" in err and "(encoder)" in err
    assert "train.freeze: " in err
    # between runs of one model every tensor is copied, the head too
    _, meta = load_model(run)
    again = create_model("cnn_lstm", **meta.model_config)
    ws = warm_start(again, str(run), "cnn_lstm")
    best = _weights(run)
    assert not ws.fresh and all(torch.equal(again.state_dict()[k], v) for k, v in best.items())


def test_warm_start_without_freeze_trains_the_copied_encoder(pilotnet_run, tiny_cache, tmp_path):
    cfg = small_train_config(
        tiny_cache, tmp_path / "ft", f"train.init_from={pilotnet_run}", "train.max_steps=3"
    )
    lstm, pn = _weights(train(cfg, progress=False), "last"), _weights(pilotnet_run)
    assert any(not torch.equal(pn[k], lstm[k]) for k in pn if k.startswith("encoder."))


def test_warm_start_reports_what_it_copied_and_refuses_a_model_with_nothing_in_common(
    pilotnet_run,
):
    model = create_model("cnn_lstm", height=66, width=200, hidden=8, feat_dim=8)
    ws = warm_start(model, str(pilotnet_run), "cnn_lstm")
    assert ws.source == "pilotnet" and ws.loaded and not ws.clash
    assert {k.split(".")[0] for k in ws.loaded} == {"encoder"}
    assert {k.split(".")[0] for k in ws.fresh} == {"project", "rnn", "head"}
    # a 5-frame 3D front: the encoder's first convolution takes 8 channels, not 3
    komanda = create_model("komanda", height=66, width=200, hidden=8, feat_dim=8)
    ws = warm_start(komanda, str(pilotnet_run), "komanda")
    assert ws.clash and ws.clash[0].startswith("encoder.") and "other shapes" in ws.summary("R")
    other = create_model("feat_lstm")  # EfficientNet encoder: no name in common
    with pytest.raises(SteertimeError, match=r"none of its pilotnet weights fit this feat_lstm"):
        warm_start(other, str(pilotnet_run), "feat_lstm")


def test_freeze_refuses_a_module_that_is_not_there_before_writing_anything(tiny_cache, tmp_path):
    model = create_model("cnn_lstm", height=66, width=200, hidden=8, feat_dim=8)
    with pytest.raises(SteertimeError, match=r"'encodr' names no parameter.*encoder, head"):
        freeze(model, "encodr")
    with pytest.raises(SteertimeError, match="every parameter"):
        freeze(model, "encoder,project,rnn,head")
    assert all(p.requires_grad for p in model.parameters())  # a refusal changes nothing
    cfg = small_train_config(tiny_cache, tmp_path / "bad", "train.freeze=encodr")
    with pytest.raises(SteertimeError, match="encodr"):
        train(cfg, progress=False)
    assert not (tmp_path / "bad").exists()


def test_freeze_refuses_an_encoder_whose_batchnorm_would_keep_moving():
    bn = create_model("cnn_lstm", height=66, width=200, encoder_cfg={"norm": "batch"})
    with pytest.raises(SteertimeError, match=r"encoder\.net\.1 is a BatchNorm layer"):
        freeze(bn, "encoder")
    assert all(p.requires_grad for p in bn.parameters())
    assert bn.training  # the check leaves the mode as it was
    gn = create_model("cnn_lstm", height=66, width=200, encoder_cfg={"norm": "group"})
    assert freeze(gn, "encoder")
    # the ImageNet encoder holds its batch norms in eval mode itself: freezing it is fine
    feat = create_model("feat_lstm", height=66, width=200)
    assert any(n.startswith("encoder.") for n in freeze(feat, "encoder"))
