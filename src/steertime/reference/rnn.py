"""A vanilla RNN, h_t = tanh(W_xh x_t + W_hh h_{t-1} + b), y_t = W_hy h_t + b_y, with
backpropagation through time written out step by step."""

from __future__ import annotations

import numpy as np

from steertime.reference.gates import add_backward, matmul_backward, tanh_backward


class RNN:
    def __init__(self, n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        s = 1 / np.sqrt(n_hidden)
        self.p = {
            "W_xh": rng.uniform(-s, s, (n_hidden, n_in)),
            "W_hh": rng.uniform(-s, s, (n_hidden, n_hidden)),
            "b_h": rng.uniform(-s, s, n_hidden),
            "W_hy": rng.uniform(-s, s, (n_out, n_hidden)),
            "b_y": rng.uniform(-s, s, n_out),
        }

    def forward(self, xs: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, dict]:
        """xs (T, n_in), h0 (H,) -> ys (T, n_out), cache for backward."""
        p, hs, ys = self.p, [h0], []
        for x in xs:
            h = np.tanh(p["W_xh"] @ x + p["W_hh"] @ hs[-1] + p["b_h"])
            hs.append(h)
            ys.append(p["W_hy"] @ h + p["b_y"])
        return np.array(ys), {"xs": xs, "hs": hs}

    def backward(self, dys: np.ndarray, cache: dict) -> tuple[dict, np.ndarray, list[float]]:
        """dys (T, n_out) = ∂loss/∂y_t -> (parameter grads, ∂loss/∂h0, |∂loss/∂h_t| per t)."""
        p, xs, hs = self.p, cache["xs"], cache["hs"]
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dh_next = np.zeros_like(hs[0])  # gradient arriving from the future, through W_hh
        norms = [0.0] * len(xs)
        for t in reversed(range(len(xs))):
            dW, dh = matmul_backward(dys[t], p["W_hy"], hs[t + 1])
            g["W_hy"] += dW
            g["b_y"] += dys[t]
            dh_total, _ = add_backward(dh + dh_next)  # two paths meet at h_t: gradients add
            norms[t] = float(np.linalg.norm(dh_total))
            da = tanh_backward(dh_total, hs[t + 1])
            g["b_h"] += da
            dW, _ = matmul_backward(da, p["W_xh"], xs[t])
            g["W_xh"] += dW
            dW, dh_next = matmul_backward(da, p["W_hh"], hs[t])
            g["W_hh"] += dW
        return g, dh_next, norms
