"""An LSTM cell unrolled through time, forward and backward by hand.

    i, f, o = σ(·), g = tanh(·)   from W [x_t; h_{t-1}] + b   (gate order i, f, g, o as PyTorch)
    c_t = f ⊙ c_{t-1} + i ⊙ g       (add gate: the cell state's gradient highway)
    h_t = o ⊙ tanh(c_t)
    y_t = W_y h_t + b_y

Through c_t the gradient is only multiplied by f (no squashing slope), which is why an
LSTM can carry information — and gradients — much further back than a vanilla RNN.
"""

from __future__ import annotations

import numpy as np

from steertime.reference.gates import (
    add_backward,
    matmul_backward,
    mul_backward,
    sigmoid,
    sigmoid_backward,
    tanh_backward,
)


class LSTM:
    def __init__(self, n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        s = 1 / np.sqrt(n_hidden)
        self.H = n_hidden
        self.p = {
            "W_x": rng.uniform(-s, s, (4 * n_hidden, n_in)),
            "W_h": rng.uniform(-s, s, (4 * n_hidden, n_hidden)),
            "b": rng.uniform(-s, s, 4 * n_hidden),
            "W_y": rng.uniform(-s, s, (n_out, n_hidden)),
            "b_y": rng.uniform(-s, s, n_out),
        }

    def forward(self, xs: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> tuple[np.ndarray, dict]:
        p, H = self.p, self.H
        h, c, steps, ys = h0, c0, [], []
        for x in xs:
            a = p["W_x"] @ x + p["W_h"] @ h + p["b"]
            i, f = sigmoid(a[:H]), sigmoid(a[H : 2 * H])
            g, o = np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
            c_new = f * c + i * g
            tc = np.tanh(c_new)
            h_new = o * tc
            steps.append(
                {"x": x, "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "tc": tc, "h_new": h_new}
            )
            h, c = h_new, c_new
            ys.append(p["W_y"] @ h + p["b_y"])
        return np.array(ys), {"steps": steps}

    def backward(
        self, dys: np.ndarray, cache: dict
    ) -> tuple[dict, np.ndarray, np.ndarray, list[float]]:
        """-> (parameter grads, ∂loss/∂h0, ∂loss/∂c0, |∂loss/∂h_t| per t)."""
        p = self.p
        g_ = {k: np.zeros_like(v) for k, v in p.items()}
        steps = cache["steps"]
        dh_next = np.zeros(self.H)
        dc_next = np.zeros(self.H)
        norms = [0.0] * len(steps)
        for t in reversed(range(len(steps))):
            s = steps[t]
            dW, dh = matmul_backward(dys[t], p["W_y"], s["h_new"])
            g_["W_y"] += dW
            g_["b_y"] += dys[t]
            dh, _ = add_backward(dh + dh_next)
            norms[t] = float(np.linalg.norm(dh))
            do, dtc = mul_backward(dh, s["o"], s["tc"])  # h = o * tanh(c)
            dc = tanh_backward(dtc, s["tc"]) + dc_next  # two paths into c_t: they add
            dfc, dig = add_backward(dc)  # c = f*c_prev + i*g
            df, dc_prev = mul_backward(dfc, s["f"], s["c"])
            di, dg = mul_backward(dig, s["i"], s["g"])
            da = np.concatenate(
                [
                    sigmoid_backward(di, s["i"]),
                    sigmoid_backward(df, s["f"]),
                    tanh_backward(dg, s["g"]),
                    sigmoid_backward(do, s["o"]),
                ]
            )
            g_["b"] += da
            dW, _ = matmul_backward(da, p["W_x"], s["x"])
            g_["W_x"] += dW
            dW, dh_next = matmul_backward(da, p["W_h"], s["h"])
            g_["W_h"] += dW
            dc_next = dc_prev
        return g_, dh_next, dc_next, norms
