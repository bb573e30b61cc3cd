"""The hand-written BPTT matches finite differences and PyTorch autograd on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steertime.reference import LSTM, RNN
from steertime.reference import gates as G


def _loss(ys, target):
    return 0.5 * float(np.sum((ys - target) ** 2))


def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        a = f()
        x[i] = old - eps
        b = f()
        x[i] = old
        g[i] = (a - b) / (2 * eps)
    return g


def test_gates_by_hand():
    dout = np.array([2.0])
    assert G.add_backward(dout) == (dout, dout)
    dx, dy = G.mul_backward(dout, np.array([3.0]), np.array([5.0]))
    assert dx == 10.0 and dy == 6.0  # swapped inputs
    assert G.relu_backward(np.array([1.0, 1.0]), np.array([-1.0, 2.0])).tolist() == [0.0, 1.0]
    y = G.sigmoid(np.array([0.0]))
    assert G.sigmoid_backward(np.array([1.0]), y) == pytest.approx(0.25)


@pytest.mark.parametrize("cls", [RNN, LSTM])
def test_matches_finite_differences(cls):
    rng = np.random.default_rng(0)
    net = cls(3, 4, 2, seed=1)
    xs, target = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    h0 = rng.normal(size=4) * 0.1
    state = (h0,) if cls is RNN else (h0, rng.normal(size=4) * 0.1)

    def f():
        return _loss(net.forward(xs, *state)[0], target)

    ys, cache = net.forward(xs, *state)
    grads = net.backward(ys - target, cache)[0]
    for k, v in net.p.items():
        num = _numeric_grad(f, v)
        assert np.allclose(grads[k], num, atol=1e-6, rtol=1e-5), k


def _torch_twin(cell: type, net, names: tuple[str, str, str, str], xs, target):
    """The same network in PyTorch (weights copied from the numpy reference), run forward
    and backward on 0.5·‖y − target‖². names: input, recurrent, bias, output weights."""
    w_x, w_h, b, w_y = (torch.from_numpy(net.p[n]) for n in names)
    rnn = cell(w_x.shape[1], w_h.shape[1], batch_first=True).double()
    head = torch.nn.Linear(w_h.shape[1], w_y.shape[0]).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(w_x)
        rnn.weight_hh_l0.copy_(w_h)
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(w_y)
        head.bias.copy_(torch.from_numpy(net.p["b_y"]))
    out, _ = rnn(torch.from_numpy(xs)[None])
    y = head(out)[0]
    (0.5 * (y - torch.from_numpy(target)).square().sum()).backward()
    return y.detach().numpy(), rnn, head


def test_rnn_matches_pytorch():
    rng = np.random.default_rng(2)
    net = RNN(3, 5, 2, seed=3)
    xs, target = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    ys, cache = net.forward(xs, np.zeros(5))
    g, _, _ = net.backward(ys - target, cache)
    y, rnn, head = _torch_twin(torch.nn.RNN, net, ("W_xh", "W_hh", "b_h", "W_hy"), xs, target)
    assert np.allclose(y, ys)
    assert np.allclose(rnn.weight_hh_l0.grad.numpy(), g["W_hh"])
    assert np.allclose(rnn.weight_ih_l0.grad.numpy(), g["W_xh"])
    assert np.allclose(head.weight.grad.numpy(), g["W_hy"])


def test_lstm_matches_pytorch():
    rng = np.random.default_rng(4)
    net = LSTM(3, 4, 2, seed=5)
    xs, target = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    ys, cache = net.forward(xs, np.zeros(4), np.zeros(4))
    g, _, _, _ = net.backward(ys - target, cache)
    y, lstm, _ = _torch_twin(torch.nn.LSTM, net, ("W_x", "W_h", "b", "W_y"), xs, target)
    assert np.allclose(y, ys)
    assert np.allclose(lstm.weight_hh_l0.grad.numpy(), g["W_h"])
    assert np.allclose(lstm.weight_ih_l0.grad.numpy(), g["W_x"])
    assert np.allclose(lstm.bias_ih_l0.grad.numpy(), g["b"])


def test_vanilla_rnn_gradient_vanishes_faster_than_lstm():
    """Gradient of the last step's loss w.r.t. h_t, going back in time."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 3))
    rnn, lstm = RNN(3, 16, 1, seed=0), LSTM(3, 16, 1, seed=0)
    lstm.p["b"][16:32] += 3.0  # forget gates open (a common init): the cell remembers
    d = np.zeros((60, 1))
    d[-1] = 1.0
    _, c = rnn.forward(xs, np.zeros(16))
    r = rnn.backward(d, c)[2]
    _, c = lstm.forward(xs, np.zeros(16), np.zeros(16))
    m = lstm.backward(d, c)[3]
    assert r[0] / r[-1] < 1e-3 < m[0] / m[-1]
