"""The PilotNet encoder's `pool` and `norm` options: what they compute, that they train,
stream and export like the default, and that a wrong value is refused."""

from __future__ import annotations

import pytest
import torch

from steertime.errors import SteertimeError
from steertime.models import create_model
from steertime.models.encoders import SpatialSoftmax
from steertime.models.registry import create_encoder
from steertime.stream import OnnxPredictor, Predictor, export_onnx
from tests.conftest import LAYOUT, SPEC

OPTIONS = [
    {"pool": "spatial_softmax"},
    {"norm": "batch"},
    {"norm": "group"},
    {"pool": "spatial_softmax", "norm": "batch"},
]


def _frames(b=2, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 66, 200, 3), dtype=torch.uint8, generator=g)


def test_spatial_softmax_finds_where_each_channel_fires():
    ss = SpatialSoftmax(channels=2, height=5, width=10)
    x = torch.zeros(1, 2, 5, 10)
    x[0, 0, 2, 9] = 40.0  # right edge, middle row
    x[0, 1, 0, 0] = 40.0  # top-left corner
    with torch.no_grad():
        xy = ss(x).reshape(2, 2)  # (C, [x, y])
    assert torch.allclose(xy[0], torch.tensor([1.0, 0.0]), atol=1e-3)
    assert torch.allclose(xy[1], torch.tensor([-1.0, -1.0]), atol=1e-3)
    # a flat map has no place: the centre
    with torch.no_grad():
        assert torch.allclose(ss(torch.zeros(1, 2, 5, 10)), torch.zeros(1, 4), atol=1e-6)


def test_spatial_softmax_stays_float32_under_bf16_autocast():
    ss = SpatialSoftmax(channels=3, height=4, width=6)
    x = torch.randn(2, 3, 4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ss(x.bfloat16())
    assert out.dtype == torch.float32
    assert torch.allclose(out, ss(x.bfloat16().float()), atol=1e-6)


def test_spatial_softmax_gradient_matches_finite_differences():
    torch.manual_seed(0)
    ss = SpatialSoftmax(channels=2, height=3, width=4).double()
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ss, (x,))


@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_every_parameter_learns_and_chunks_equal_whole(opts):
    torch.manual_seed(0)
    m = create_model("cnn_lstm", n_outputs=2, height=66, width=200, encoder_cfg=opts)
    y, _ = m(_frames())
    assert y.shape == (2, 6, 2) and torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in m.named_parameters():
        if name.startswith("aux_head"):
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    m.eval()  # running statistics of BatchNorm now hold the frames above
    x = _frames(2, 9, seed=1)
    with torch.no_grad():
        whole, _ = m(x)
        a, state = m(x[:, :4])
        b, _ = m(x[:, 4:], state)
    assert torch.allclose(torch.cat([a, b], 1), whole, atol=1e-5)


def test_pooled_features_are_two_per_channel_and_far_fewer():
    flat = create_encoder("pilotnet_conv", height=120, width=160)
    ss = create_encoder("pilotnet_conv", height=120, width=160, pool="spatial_softmax")
    assert ss.out_dim == 2 * 64 and flat.out_dim == 64 * 8 * 13


@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_exports_and_matches_onnx(opts, tmp_path):
    from steertime.models.checkpoint import save_untrained_run

    pytest.importorskip("onnxruntime")
    run = save_untrained_run(
        tmp_path / "run", "cnn_lstm", LAYOUT, SPEC.to_dict(), (160, 320), encoder_cfg=opts
    )
    folder = export_onnx(run, tmp_path / "onnx")
    torch_p, onnx_p = Predictor.from_run(run), OnnxPredictor(folder)
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        f = torch.randint(0, 256, (160, 320, 3), dtype=torch.uint8, generator=g).numpy()
        a, b = torch_p.step(f, 0.1 * i), onnx_p.step(f, 0.1 * i)
        assert abs(a["steering"] - b["steering"]) < 1e-4, (i, a, b)


def test_pilotnet_takes_the_same_options():
    m = create_model("pilotnet", n_outputs=2, pool="spatial_softmax", norm="group")
    assert m.encoder.cfg.pool == "spatial_softmax" and m.encoder.out_dim == 128
    assert any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
    y, _ = m(_frames())
    assert y.shape == (2, 6, 2) and torch.isfinite(y).all()


@pytest.mark.parametrize("bad", [{"pool": "max"}, {"norm": "layer"}], ids=str)
def test_unknown_pool_or_norm_is_refused_naming_the_choices(bad):
    (key,) = bad
    with pytest.raises(SteertimeError, match=f"{key} must be one of"):
        create_encoder("pilotnet_conv", **bad)
