"""The gates, each as forward + backward. `d<name>` is ∂loss/∂<name>."""

from __future__ import annotations

import numpy as np


def add_backward(dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z = x + y: the gradient is distributed, unchanged, to both inputs."""
    return dout, dout


def mul_backward(dout: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z = x * y: each input's gradient is the upstream gradient times the *other* input."""
    return dout * y, dout * x


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """z = max(x, 0): the gradient is routed to x only where x won (x > 0)."""
    return dout * (x > 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = σ(x): local slope y(1 − y) ≤ 0.25, ~0 in the tails (saturation)."""
    return dout * y * (1.0 - y)


def tanh_backward(dout: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y = tanh(x): local slope 1 − y² ≤ 1, ~0 when |x| is large."""
    return dout * (1.0 - y * y)


def matmul_backward(
    dout: np.ndarray, W: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """z = W @ x (x a vector): ∂W = dout ⊗ x, ∂x = Wᵀ dout."""
    return np.outer(dout, x), W.T @ dout
