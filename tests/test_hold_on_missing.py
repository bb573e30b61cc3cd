"""`hold_on_missing`: on a missing frame the output is the previous output plus a learned
correction; everything that carries model state (streaming, ONNX, training, ensembles)
carries the held output with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from steertime.errors import SteertimeError
from steertime.models import create_model
from steertime.models.checkpoint import save_untrained_run
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from tests.conftest import LAYOUT, SPEC, batched_with_gaps

_HOLD = {"missing_input": True, "hold_on_missing": True}
SMALL = {"height": 66, "width": 200, "hidden": 16, "feat_dim": 16, "missing_input": True}


def _pair(n_outputs: int = 2, **kw):
    """A hold model and the same weights without the hold (its head output z)."""
    torch.manual_seed(0)
    hold = create_model("cnn_lstm", n_outputs=n_outputs, hold_on_missing=True, **SMALL, **kw)
    plain = create_model("cnn_lstm", n_outputs=n_outputs, **SMALL)
    plain.load_state_dict(hold.state_dict())
    return hold.eval(), plain.eval()


def _clip(t: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(40, 200, (2, t, 66, 200, 3), dtype=torch.uint8, generator=g)


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(40, 200, (160, 320, 3), dtype=np.uint8) for _ in range(n)]


@torch.no_grad()
def test_missing_frame_is_previous_output_plus_correction():
    hold, plain = _pair()
    x = _clip()
    miss = torch.zeros(2, 8, dtype=torch.bool)
    miss[0, 3:5] = True  # two in a row: the hold chains
    miss[1, 0] = True  # first frame of a fresh stream: y_{-1} is the zero state
    z, _ = plain(x, None, miss)  # (B, T, K)
    y, state = hold(x, None, miss)
    want = z.clone()
    for b, t in miss.nonzero().tolist():
        want[b, t] = (want[b, t - 1] if t > 0 else 0) + z[b, t]
    assert torch.equal(y, want)
    assert torch.equal(state["last"], y[:, -1])
    assert not torch.equal(y[0, 3], z[0, 3])  # the hold did something
    # no missing frame (or no flags at all): the plain model's outputs
    none = torch.zeros(2, 8, dtype=torch.bool)
    assert torch.equal(hold(x, None, none)[0], plain(x, None, none)[0])
    y2, s2 = hold(x)
    assert torch.equal(y2, plain(x)[0]) and torch.equal(s2["last"], y2[:, -1])


@torch.no_grad()
def test_spread_columns_come_from_the_head():
    # train.spread: K=1 mean then 1 log-spread; only the mean is held
    hold, plain = _pair(n_outputs=2, held_outputs=1)
    x, miss = _clip(5), torch.zeros(2, 5, dtype=torch.bool)
    miss[:, 2] = True
    z, _ = plain(x, None, miss)
    y, state = hold(x, None, miss)
    assert state["last"].shape == (2, 1)
    assert torch.equal(y[..., 1], z[..., 1])
    assert torch.equal(y[:, 2, 0], z[:, 1, 0] + z[:, 2, 0])


@torch.no_grad()
def test_stepwise_equals_whole_chunk_and_reset_rows():
    hold, _ = _pair()
    x, miss = _clip(), torch.zeros(2, 8, dtype=torch.bool)
    miss[0, 2:6] = True
    miss[1, 5] = True
    y, full = hold(x, None, miss)
    state, ys = hold.init_state(2), []
    for t in range(8):
        yt, state = hold(x[:, t : t + 1], state, miss[:, t : t + 1])
        ys.append(yt)
    assert torch.allclose(torch.cat(ys, 1), y, atol=1e-5)
    assert torch.allclose(state["last"], full["last"], atol=1e-5)
    # a stream start zeroes the held output of that row only
    reset = hold.reset_rows(full, torch.tensor([True, False]))
    assert not reset["last"][0].any() and torch.equal(reset["last"][1], full["last"][1])


def test_predictor_streams_like_the_batched_forward(tmp_path):
    run = save_untrained_run(
        tmp_path / "run", "cnn_lstm", LAYOUT, SPEC.to_dict(), (160, 320), **_HOLD
    )
    frames = _frames(8)
    p = Predictor.from_run(run)
    assert "last" in p.state
    outs = [p.step(None if i in (3, 4) else f, 0.1 * i) for i, f in enumerate(frames)]
    assert [o["status"] for o in outs[2:6]] == ["ok", "missing", "missing", "ok"]
    batched = batched_with_gaps(p, frames, slice(3, 5))
    assert np.allclose([o["steering"] for o in outs], batched[:, 0], atol=1e-5)
    assert np.allclose([o["speed"] for o in outs], batched[:, 1], atol=1e-5)


def test_onnx_export_carries_the_held_output(tmp_path):
    run = save_untrained_run(
        tmp_path / "run", "cnn_lstm", LAYOUT, SPEC.to_dict(), (160, 320), **_HOLD
    )
    folder = export_onnx(run, tmp_path / "onnx")
    side = json.loads((folder / "model.json").read_text())
    assert side["missing_input"] is True and side["state"]["last"]["shape"] == [1, 2]
    assert "last" in side["inputs"]
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(folder)
    for i, f in enumerate(_frames(7)):
        f = None if i in (2, 3, 5) else f
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        assert a["status"] == b["status"]
        assert abs(a["steering"] - b["steering"]) < 1e-4 and abs(a["speed"] - b["speed"]) < 1e-4
    assert np.allclose(onnx_p.state["last"], torch_p.state["last"].numpy(), atol=1e-5)


@pytest.mark.parametrize("spread", [False, True])
def test_short_training_run(tiny_cache, tmp_path, spread):
    from steertime.models.checkpoint import load_model
    from steertime.train import train
    from tests.conftest import small_train_config

    cfg = small_train_config(
        tiny_cache,
        tmp_path / "run",
        "model.missing_input=true",
        "model.hold_on_missing=true",
        "data.faults=blackout:0.3@1",
        "train.max_steps=3",
        f"train.spread={str(spread).lower()}",
    )
    train(cfg, progress=False)
    model, meta = load_model(tmp_path / "run")
    assert model.hold_on_missing and model.config.held_outputs == (meta.layout.k if spread else 0)
    assert model.init_state(1)["last"].shape == (1, meta.layout.k)
    assert Predictor.from_run(tmp_path / "run").step(None, 0.0)["status"] == "missing"


@torch.no_grad()
def test_ensemble_member_carries_its_held_output():
    members = [{"model": "cnn_lstm", "config": {**SMALL, "hold_on_missing": True}}] * 2
    ens = create_model("ensemble", n_outputs=2, height=66, width=200, members=members)
    y, state = ens(_clip(3))
    assert y.shape == (2, 3, 2) and {"m0_last", "m1_last"} <= set(state)


def test_refused_without_the_flag_or_with_feedback():
    with pytest.raises(SteertimeError, match="missing_input"):
        create_model("cnn_lstm", n_outputs=2, hold_on_missing=True)
    with pytest.raises(SteertimeError, match="autoregressive"):
        create_model("cnn_lstm_ar", n_outputs=2, missing_input=True, hold_on_missing=True)
    with pytest.raises(SteertimeError, match="held_outputs"):
        create_model("cnn_lstm", n_outputs=2, held_outputs=3)


@torch.no_grad()
def test_hold_decay_keeps_a_learned_share_of_the_previous_output():
    torch.manual_seed(0)
    decay = create_model("cnn_lstm", n_outputs=2, hold_on_missing=True, hold_decay=True, **SMALL)
    decay.eval()
    decay.decay_logit.copy_(torch.tensor([0.0, 2.0]))  # keep 0.5 and sigmoid(2)
    plain = create_model("cnn_lstm", n_outputs=2, **SMALL).eval()
    plain.load_state_dict({k: v for k, v in decay.state_dict().items() if k != "decay_logit"})
    x, miss = _clip(), torch.zeros(2, 8, dtype=torch.bool)
    miss[0, 3:6] = True
    z, _ = plain(x, None, miss)
    y, _ = decay(x, None, miss)
    keep = torch.sigmoid(torch.tensor([0.0, 2.0]))
    want = z.clone()
    for t in (3, 4, 5):
        want[0, t] = keep * want[0, t - 1] + z[0, t]
    assert torch.allclose(y, want, atol=1e-6)


def test_hold_decay_trains_exports_and_is_refused_without_the_hold(tmp_path):
    model = create_model("cnn_lstm", n_outputs=2, hold_on_missing=True, hold_decay=True, **SMALL)
    miss = torch.zeros(2, 8, dtype=torch.bool)
    miss[:, 2:6] = True
    y, _ = model(_clip(), None, miss)
    y.square().mean().backward()
    assert model.decay_logit.grad is not None and model.decay_logit.grad.abs().sum() > 0
    run = save_untrained_run(
        tmp_path / "run", "cnn_lstm", LAYOUT, SPEC.to_dict(), (160, 320), hold_decay=True, **_HOLD
    )
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(export_onnx(run, tmp_path / "o"))
    for i, f in enumerate(_frames(7)):
        f = None if i in (2, 3, 4) else f
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        assert abs(a["steering"] - b["steering"]) < 1e-4
    with pytest.raises(SteertimeError, match="hold_decay"):
        create_model("cnn_lstm", n_outputs=2, missing_input=True, hold_decay=True)
