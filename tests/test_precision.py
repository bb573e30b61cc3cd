"""train.precision=bf16: the encoder in bfloat16, everything that is kept in float32."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from steertime.errors import SteertimeError
from steertime.models import create_model, list_models
from steertime.train import train
from steertime.train.step import StepLoss
from tests.conftest import small_train_config


def _step_loss(precision: str) -> tuple[StepLoss, list[torch.dtype]]:
    torch.manual_seed(0)
    model = create_model("cnn_lstm", height=66, width=200, n_outputs=2, hidden=8, feat_dim=8)
    seen: list[torch.dtype] = []
    model.encoder.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return StepLoss(model, [1.0, 1.0], 0, 0.5, 0, precision=precision), seen


def test_bf16_runs_the_encoder_in_bfloat16_and_the_rest_in_float32():
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (2, 4, 66, 200, 3), dtype=torch.uint8, generator=g)
    target = torch.randn(2, 4, 2, generator=g)
    losses, grads = {}, {}
    for precision in ("fp32", "bf16"):
        step, seen = _step_loss(precision)
        state = step.model.init_state(2)
        loss, new_state = step(frames, target, state)
        loss.backward()
        want = torch.bfloat16 if precision == "bf16" else torch.float32
        assert seen == [want]
        assert loss.dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in new_state.values())  # carried on
        assert all(p.dtype == torch.float32 for p in step.model.parameters())
        losses[precision] = loss.item()
        grads[precision] = step.model.head[0].weight.grad.clone()
    # the same computation, to bfloat16's 8-bit mantissa
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
    cos = torch.nn.functional.cosine_similarity(grads["bf16"].flatten(), grads["fp32"].flatten(), 0)
    assert cos > 0.95


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_a_finite_bf16_step(name):
    torch.manual_seed(0)
    model = create_model(name, n_outputs=2, height=66, width=200)
    step = StepLoss(model, [1.0, 1.0], 0, 0.5, 0, precision="bf16")
    frames = torch.randint(0, 255, (2, 4, 66, 200, 3), dtype=torch.uint8)
    loss, state = step(frames, torch.randn(2, 4, 2), model.init_state(2))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert all(v.dtype in (torch.float32, torch.bool, torch.uint8) for v in state.values())


def test_a_bf16_run_trains_keeps_float32_weights_and_records_it(tiny_cache, tmp_path):
    cfg = small_train_config(tiny_cache, tmp_path / "bf", "train.precision=bf16")
    run = train(cfg, progress=False)
    w = load_file(run / "checkpoints" / "best" / "model.safetensors")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in w.values())
    assert "precision: bf16" in (run / "config.yaml").read_text()


def test_an_unknown_precision_is_refused_before_anything_is_written(tiny_cache, tmp_path):
    cfg = small_train_config(tiny_cache, tmp_path / "fp16", "train.precision=fp16")
    with pytest.raises(SteertimeError, match=r"train.precision must be fp32 or bf16, got 'fp16'"):
        train(cfg, progress=False)
    assert not (tmp_path / "fp16").exists()


def test_bf16_on_a_gpu_without_bfloat16_is_refused_by_its_name(tiny_cache, tmp_path, monkeypatch):
    # No such GPU here: the device and its capabilities are stood in for.
    from steertime.train import dist as D

    gpu = D.DistInfo(0, 1, torch.device("cuda", 0))
    monkeypatch.setattr(D, "setup", lambda device="auto": gpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-16GB")
    cfg = small_train_config(tiny_cache, tmp_path / "v100", "train.precision=bf16")
    with pytest.raises(SteertimeError, match=r"Tesla V100-SXM2-16GB has no bfloat16"):
        train(cfg, progress=False)
    assert not (tmp_path / "v100" / "checkpoints").exists()
