"""Backpropagation through time by hand, in numpy, gate by gate — teaching material.

Each gate has a forward and a backward written out, so the chain rule is visible:
an add gate distributes the gradient, a multiply gate swaps its inputs' values, a max
(ReLU) gate routes it to the larger input, sigmoid and tanh scale it by their local
slopes — and those slopes (≤ 0.25 and ≤ 1) are why gradients vanish through time.
Checked against finite differences and against PyTorch autograd in tests/.
"""

from steertime.reference.lstm import LSTM
from steertime.reference.rnn import RNN

__all__ = ["LSTM", "RNN"]
