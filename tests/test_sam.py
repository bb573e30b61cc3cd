"""Sharpness-aware minimisation (`optim.sam`): gradients taken uphill, weights put back."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from steertime.errors import SteertimeError
from steertime.train import train
from steertime.train.sam import ascend, descend
from tests.conftest import small_train_config


def test_the_second_gradient_is_the_one_at_the_weights_moved_uphill():
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32)
    lin = torch.nn.Linear(3, 1)
    params = list(lin.parameters())
    start = [p.detach().clone() for p in params]

    def loss() -> torch.Tensor:
        return (lin(x).squeeze(-1) - y).square().mean()

    loss().backward()
    g = [p.grad.clone() for p in params]
    rho = 0.3
    moves = ascend(params, rho)
    norm = torch.sqrt(sum(gi.square().sum() for gi in g))
    for p, w, gi in zip(params, start, g, strict=True):  # w + rho * g / ||g||
        torch.testing.assert_close(p.detach(), w + rho * gi / norm)
    # the reference: autograd at the moved weights, computed apart from the module
    w_up = [w + rho * gi / norm for w, gi in zip(start, g, strict=True)]
    w_up = [t.requires_grad_() for t in w_up]
    ref = torch.autograd.grad(((x @ w_up[0].T + w_up[1]).squeeze(-1) - y).square().mean(), w_up)
    lin.zero_grad(set_to_none=True)
    loss().backward()
    descend(moves)
    for p, r, w in zip(params, ref, start, strict=True):
        torch.testing.assert_close(p.grad, r)
        torch.testing.assert_close(p.detach(), w)  # back where the step is taken from


def test_a_non_finite_gradient_moves_nothing():
    lin = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in lin.parameters()]
    for p in lin.parameters():
        p.grad = torch.full_like(p, float("nan"))
    assert ascend(list(lin.parameters()), 0.05) is None
    assert all(torch.equal(p, b) for p, b in zip(lin.parameters(), before, strict=True))


def _weights(tiny_cache, out, *overrides) -> dict[str, torch.Tensor]:
    cfg = small_train_config(
        tiny_cache, out, "train.threads=1", "train.epochs=1", "train.soup=0", *overrides
    )
    run = train(cfg, progress=False)
    return load_file(run / "checkpoints" / "last" / "model.safetensors")


def test_sam_steps_from_the_same_batch_and_state(tiny_cache, tmp_path):
    plain = _weights(tiny_cache, tmp_path / "plain")
    # a vanishing radius must give the plain run's step: the second pass reads the same
    # frames from the same carried state (a different batch or state would change it)
    tiny = _weights(tiny_cache, tmp_path / "tiny", "optim.sam=1e-7")
    sam = _weights(tiny_cache, tmp_path / "sam", "optim.sam=0.5")
    floats = [k for k in plain if plain[k].is_floating_point()]
    for k in floats:
        torch.testing.assert_close(tiny[k], plain[k], rtol=1e-3, atol=1e-4)
        assert torch.isfinite(sam[k]).all()
    assert any(not torch.allclose(sam[k], plain[k], atol=1e-4) for k in floats)


def test_a_negative_radius_is_refused(tiny_cache, tmp_path):
    with pytest.raises(SteertimeError, match="optim.sam must be a finite number >= 0"):
        train(small_train_config(tiny_cache, tmp_path / "r", "optim.sam=-0.1"), progress=False)
    assert not (tmp_path / "r").exists()


def test_the_second_pass_is_left_out_of_the_saturation_figures():
    from steertime.train.monitor import TrainingMonitor

    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU())
    mon = TrainingMonitor(net, None, 1.0, detailed=True)
    net(torch.randn(3, 2))
    mon.recording = False  # what Trainer._sharpness_aware sets around its second pass
    net(torch.randn(3, 2))
    mon.recording = True
    assert [len(v) for v in mon.saturation.values()] == [1]
