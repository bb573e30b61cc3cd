"""`train.soup`: the K best-validated epochs averaged, kept only when validation agrees."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from steertime.errors import SteertimeError
from steertime.models.checkpoint import read_meta
from steertime.train import train
from steertime.train.soup import TopEpochs
from tests.conftest import small_train_config


def _lin(value: float) -> torch.nn.Module:
    m = torch.nn.BatchNorm1d(2)  # float weights and an integer buffer
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(-value)
    m.num_batches_tracked.fill_(int(value))
    return m


def test_top_epochs_keeps_the_k_best_and_averages_them(tmp_path):
    top = TopEpochs(tmp_path / "top", k=3)
    for epoch, (score, w) in enumerate([(5, 1.0), (3, 2.0), (4, 3.0), (6, 4.0), (1, 5.0)]):
        top.offer(epoch, score, _lin(w), {})
    assert top.epochs() == [4, 1, 2]  # best first; epochs 0 and 3 dropped
    assert sorted(p.name for p in (tmp_path / "top").iterdir()) == ["e001", "e002", "e004"]
    avg = top.average()
    assert torch.allclose(avg["weight"], torch.full((2,), (5.0 + 2.0 + 3.0) / 3))
    assert torch.allclose(avg["bias"], torch.full((2,), -(5.0 + 2.0 + 3.0) / 3))
    assert avg["num_batches_tracked"].item() == 5  # from the best epoch, not averaged
    again = TopEpochs(tmp_path / "top", k=3)  # a resumed run finds what was kept
    assert again.epochs() == [4, 1, 2]
    assert TopEpochs(tmp_path / "none", k=3).average() is None


def _train_with_scores(tiny_cache, out, scores, soup=3):
    import steertime.train.loop as loop

    calls = iter(scores)
    original = loop.stream_metrics
    loop.stream_metrics = lambda *a, **k: {"rmse_steering": next(calls)}
    try:
        cfg = small_train_config(
            tiny_cache, out, "train.threads=1", f"train.epochs={len(scores) - 1}",
            "train.patience=10", f"train.soup={soup}",
        )  # fmt: skip
        return train(cfg, progress=False)
    finally:
        loop.stream_metrics = original


def test_soup_replaces_best_when_it_validates_better(tiny_cache, tmp_path):
    # epochs score 1.0, 0.9, 0.95, 0.92; the soup of epochs 1, 3, 2 then scores 0.8
    run = _train_with_scores(tiny_cache, tmp_path / "r", [1.0, 0.9, 0.95, 0.92, 0.8])
    report = json.loads((run / "soup.json").read_text())
    assert report["epochs"] == [1, 3, 2] and report["kept"] is True
    assert report["score"] == 0.8 and report["best_epoch_score"] == 0.9
    meta = read_meta(run / "checkpoints" / "best")
    assert meta["soup_epochs"] == [1, 3, 2] and meta["score"] == 0.8
    best = load_file(run / "checkpoints" / "best" / "model.safetensors")
    members = [
        load_file(run / "checkpoints" / "top" / f"e{e:03d}" / "model.safetensors")
        for e in (1, 2, 3)
    ]
    for k, v in best.items():
        if v.is_floating_point():
            assert torch.allclose(v, torch.stack([m[k] for m in members]).mean(0), atol=1e-6)


def test_soup_that_validates_worse_leaves_the_best_epoch(tiny_cache, tmp_path):
    run = _train_with_scores(tiny_cache, tmp_path / "r", [1.0, 0.9, 0.95, 0.92, 0.91])
    assert json.loads((run / "soup.json").read_text())["kept"] is False
    meta = read_meta(run / "checkpoints" / "best")
    assert meta["epoch"] == 1 and "soup_epochs" not in meta
    best = load_file(run / "checkpoints" / "best" / "model.safetensors")
    epoch1 = load_file(run / "checkpoints" / "top" / "e001" / "model.safetensors")
    assert all(torch.equal(best[k], epoch1[k]) for k in best)


def test_soup_off_and_refuses_negative(tiny_cache, tmp_path):
    run = _train_with_scores(tiny_cache, tmp_path / "r", [1.0, 0.9, 0.95], soup=0)
    assert not (run / "soup.json").exists() and not (run / "checkpoints" / "top").exists()
    cfg = small_train_config(tiny_cache, tmp_path / "bad", "train.soup=-1")
    with pytest.raises(SteertimeError, match="train.soup must be >= 0"):
        train(cfg, progress=False)


def test_real_soup_run_streams(tiny_cache, tmp_path):
    # no stubs: the averaged weights validate, load and predict like any checkpoint
    from steertime.models.checkpoint import load_model

    cfg = small_train_config(
        tiny_cache, tmp_path / "r", "train.threads=1", "train.epochs=3", "train.soup=2"
    )
    run = train(cfg, progress=False)
    report = json.loads((run / "soup.json").read_text())
    assert len(report["epochs"]) == 2 and report["score"] > 0
    model, _ = load_model(run)
    y, _ = model(torch.zeros(1, 2, 66, 200, 3, dtype=torch.uint8), model.init_state(1))
    assert torch.isfinite(y).all()
