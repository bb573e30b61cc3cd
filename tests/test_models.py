"""Every registered model: shapes, gradients to every parameter, no NaN, chunking = whole."""

from __future__ import annotations

import pytest
import torch

from steertime.errors import SteertimeError
from steertime.models import create_model, list_models, model_config

SMALL = {"height": 66, "width": 200}


def _frames(b=2, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 66, 200, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_parameter(name):
    torch.manual_seed(0)
    m = create_model(name, n_outputs=3, **SMALL)
    y, state = m(_frames())
    assert y.shape == (2, 6, 3) and torch.isfinite(y).all()
    loss = y.square().mean()
    if m.autoregressive:  # the teacher-forced path must reach every parameter too
        feats, st = m.encode(_frames(), m.init_state(2))
        y_tf, _ = m.core(feats, st, teacher=torch.randn(2, 6, 3))
        loss = loss + y_tf.square().mean()
    loss.backward()
    for pname, p in m.named_parameters():
        if not p.requires_grad:  # a frozen pretrained encoder
            assert p.grad is None
            continue
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} got an all-zero gradient"
    for v in state.values():
        assert v.shape[0] == 2


@pytest.mark.parametrize("name", list_models())
def test_chunks_equal_whole_sequence(name):
    torch.manual_seed(0)
    m = create_model(name, n_outputs=2, **SMALL).eval()
    x = _frames(2, 9)
    with torch.no_grad():
        whole, s_whole = m(x)
        parts, state = [], None
        for a, b in [(0, 1), (1, 4), (4, 9)]:
            y, state = m(x[:, a:b], state)
            parts.append(y)
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-5)
    for k in s_whole:
        assert torch.allclose(s_whole[k], state[k], atol=1e-5)


def test_reset_rows_restarts_only_those_rows():
    m = create_model("komanda", **SMALL).eval()
    x = _frames(2, 4)
    with torch.no_grad():
        _, state = m(x)
        state = m.reset_rows(state, torch.tensor([True, False]))
        y_reset, _ = m(x[:1], None)
        y, _ = m(x, state)
    assert torch.allclose(y[:1], y_reset, atol=1e-5)
    assert not torch.allclose(y[1:], y_reset, atol=1e-3)


def test_pilotnet_matches_the_paper():
    m = create_model("pilotnet")
    n = sum(p.numel() for p in m.parameters())
    assert 240_000 < n < 260_000
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 36, 48, 64, 64]
    assert [c.kernel_size[0] for c in convs] == [5, 5, 5, 3, 3]


def test_unknown_config_key_is_rejected():
    with pytest.raises(SteertimeError, match="unknown config keys.*hiden.*valid keys"):
        create_model("cnn_lstm", hiden=32)
    with pytest.raises(SteertimeError, match="unknown model"):
        create_model("transformer9000")
    assert model_config("cnn_gru").rnn == "gru"


@pytest.mark.parametrize("rnn", ["lstm", "gru", "rnn"])
def test_inference_cell_steps_equal_the_fused_rnn(rnn):
    # Inference steps take a cell-by-cell fast path; it must match nn.LSTM/GRU/RNN.
    torch.manual_seed(0)
    m = create_model("cnn_rnn", rnn=rnn, layers=2, hidden=16, n_outputs=2).eval()
    frames = torch.randint(0, 255, (2, 5, 66, 200, 3), dtype=torch.uint8)
    whole, _ = m(frames)  # grad enabled: the fused path
    state, steps = m.init_state(2), []
    with torch.no_grad():
        for t in range(5):
            y, state = m(frames[:, t : t + 1], state)
            steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), whole.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["pilotnet", "cnn_lstm", "komanda"])
def test_relu_variant_has_no_elu_and_learns(name):
    torch.manual_seed(0)
    m = create_model(name, n_outputs=2, act="relu")
    acts = [type(mod) for mod in m.modules() if isinstance(mod, torch.nn.ELU | torch.nn.ReLU)]
    assert acts and set(acts) == {torch.nn.ReLU}
    y, _ = m(_frames())
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with pytest.raises(SteertimeError, match="act must be one of.*'elu', 'relu'.*'swish'"):
        create_model(name, act="swish")


def test_motion_stack_feeds_the_frame_and_its_differences():
    """stack=3: the encoder sees frame t, x[t]-x[t-1] and x[t-1]-x[t-2]; a fresh stream
    repeats its first frame, so its first differences are zero, not a jump from black."""
    from steertime.models.encoders import to_float

    m = create_model("motion_lstm")
    seen = []
    m.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    frames = _frames(b=1, t=4)
    with torch.no_grad():
        m(frames[:, :2])  # the stack state is carried into the next call
        m(frames[:, 2:], m(frames[:, :2])[1])
    x = to_float(frames[0])  # (T, 3, H, W)
    first, later = seen[0], seen[2]  # (2, 9, H, W): frames 0-1, then frames 2-3
    torch.testing.assert_close(first[0], torch.cat([x[0], 0 * x[0], 0 * x[0]]))
    torch.testing.assert_close(first[1], torch.cat([x[1], x[1] - x[0], 0 * x[0]]))
    torch.testing.assert_close(later[1], torch.cat([x[3], x[3] - x[2], x[2] - x[1]]))
    with pytest.raises(SteertimeError, match="choose one"):
        create_model("cnn_lstm", front3d=3, stack=3)


@pytest.mark.parametrize("name", ["pilotnet", "cnn_lstm", "motion_lstm"])
def test_frames_too_small_for_pilotnet_convs_get_a_clear_error(name):
    create_model(name, height=61, width=61)  # the smallest that fits
    with pytest.raises(SteertimeError, match=r"24x32 are too small.*at least 61x61"):
        create_model(name, height=24, width=32)


@pytest.mark.parametrize("name", ["pilotnet", "cnn_lstm"])
def test_conv_dropout_follows_every_convolution_and_is_off_in_eval(name):
    m = create_model(name, n_outputs=1, conv_dropout=0.2)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    layers = list(m.encoder.net)
    after = [layers[layers.index(c) + 2] for c in convs]  # conv, activation, dropout
    assert len(convs) == 5 and all(isinstance(d, torch.nn.Dropout) and d.p == 0.2 for d in after)
    x = _frames()
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])  # inference is deterministic
    m.train()
    torch.manual_seed(0)
    a = m(x)[0]
    assert not torch.equal(a, m(x)[0])  # training drops units
    a.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    plain = create_model(name).encoder.net
    assert not any(isinstance(mod, torch.nn.Dropout) and mod.p > 0 for mod in plain)


def test_he_init_carries_the_frames_differences_through_the_encoder():
    """Under PyTorch's default init the between-frame variation shrinks ~0.55x a layer (the
    head starts blind and training sits at predict-the-mean); `init: he` keeps it."""
    from steertime.models.registry import create_encoder

    x = torch.rand(32, 3, 66, 200, generator=torch.Generator().manual_seed(0)) - 0.5
    ratio = {}
    for init in ("torch", "he"):
        torch.manual_seed(0)
        enc = create_encoder("pilotnet_conv", height=66, width=200, init=init)
        with torch.no_grad():
            ratio[init] = float(enc(x).std(0).mean() / x.std(0).mean())
    assert ratio["torch"] < 0.1 < 0.5 < ratio["he"]
    # `model.init` reaches the encoder of both families
    for name in ("pilotnet", "cnn_lstm"):
        assert create_model(name, init="he").encoder.cfg.init == "he"
        assert create_model(name).encoder.cfg.init == "torch"
    with pytest.raises(SteertimeError, match="init must be one of"):
        create_encoder("pilotnet_conv", init="glorot")


def _last_output(m, f: torch.Tensor, state=None) -> torch.Tensor:
    with torch.no_grad():
        return m.core(f, state or m.init_state(1))[0][0, -1]


def _sees_exactly_its_window(m) -> None:
    """The last output moves with the features R = receptive_field - 1 steps back and
    not at all with older ones."""
    r = m.rnn.receptive_field - 1
    feats = torch.randn(1, r + 10, m.config.feat_dim)
    base = _last_output(m, feats)
    t_last = feats.shape[1] - 1
    for t, moves in [(t_last - r - 1, False), (t_last - r, True), (t_last, True)]:
        bumped = feats.clone()
        bumped[0, t] += 3.0
        assert (not torch.allclose(_last_output(m, bumped), base)) == moves, t


def test_temporal_convolution_remembers_exactly_its_window():
    """cnn_tcn: the output at step T moves with the features R = receptive_field - 1 steps
    back and not at all with older ones — a fixed horizon, unlike the LSTM's."""
    torch.manual_seed(0)
    m = create_model("cnn_tcn", n_outputs=1, hidden=16).eval()
    assert m.rnn.receptive_field - 1 == 30  # 4 levels, kernel 3: 2 * (1 + 2 + 4 + 8)
    _sees_exactly_its_window(m)
    m2 = create_model("cnn_tcn", layers=2, tcn_kernel=4)
    assert m2.rnn.receptive_field == 1 + 3 * (1 + 2)
    with pytest.raises(SteertimeError, match="tcn_kernel >= 2"):
        create_model("cnn_tcn", tcn_kernel=1)


def test_attention_remembers_exactly_its_window_and_ignores_an_unseen_past():
    """cnn_attn: the last output moves with the features L*(w-1) steps back and not with
    older ones; a fresh stream's empty past is masked, whatever it holds."""
    torch.manual_seed(0)
    m = create_model("cnn_attn", n_outputs=1, hidden=16, attn_window=4).eval()
    r = m.rnn.receptive_field - 1
    assert r == 2 * 3  # two blocks of 4 frames
    _sees_exactly_its_window(m)
    junk = {**m.init_state(1), "past": torch.randn(1, r, m.rnn_in) * 5}
    first = torch.randn(1, 2, m.config.feat_dim)
    torch.testing.assert_close(_last_output(m, first, junk), _last_output(m, first))
    seen = {**junk, "seen": torch.ones(1, r)}  # the same past, seen: now it counts
    assert not torch.allclose(_last_output(m, first, seen), _last_output(m, first))
    with pytest.raises(SteertimeError, match="divisible by attn_heads"):
        create_model("cnn_attn", hidden=30, attn_heads=4)
    with pytest.raises(SteertimeError, match="attn_window >= 2"):
        create_model("cnn_attn", attn_window=1)


@pytest.mark.parametrize("name", ["cnn_tcn", "cnn_attn"])
def test_windowed_cores_step_through_missing_frames(name):
    # The frame-missing flag and the held output work with the fixed-horizon cores too.
    torch.manual_seed(0)
    m = create_model(name, n_outputs=2, missing_input=True, hold_on_missing=True).eval()
    x, miss = _frames(2, 7), torch.zeros(2, 7, dtype=torch.bool)
    miss[:, 3:5] = True
    with torch.no_grad():
        whole, _ = m(x, None, miss)
        state, steps = None, []
        for t in range(7):
            y, state = m(x[:, t : t + 1], state, miss[:, t : t + 1])
            steps.append(y)
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=1e-5, rtol=1e-5)


def test_weight_drop_masks_the_recurrent_weights_while_training_only():
    torch.manual_seed(0)
    m = create_model("cnn_lstm", n_outputs=1, hidden=16, weight_drop=0.5)
    plain = create_model("cnn_lstm", n_outputs=1, hidden=16)
    plain.load_state_dict(m.state_dict())  # same weights, same names: nothing added
    feats = torch.randn(2, 5, m.config.feat_dim)
    a = m.core(feats, m.init_state(2))[0]
    b = m.core(feats, m.init_state(2))[0]
    assert not torch.allclose(a, b)  # a fresh mask each call
    a.square().mean().backward()
    g = m.rnn.weight_hh_l0.grad
    assert 0.3 < float((g == 0).float().mean()) < 0.7  # the dropped half gets no gradient
    m.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            m.core(feats, m.init_state(2))[0], plain.core(feats, plain.init_state(2))[0]
        )
    for bad in ({"weight_drop": 1.0}, {"weight_drop": 0.2, "rnn": "tcn"}):
        with pytest.raises(SteertimeError, match="weight_drop"):
            create_model("cnn_lstm", **bad)
