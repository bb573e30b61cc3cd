"""benchmarks/shift_response.py measures the steering a run gives a moved frame: on a model
whose steering *is* the bright column's position, moving the frames dx pixels right must
move its answer by exactly dx columns, with the sign, or the `data.shift_steer` value the
benchmark suggests would rest on a wrong measurement."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import bench_module


class _Centroid(torch.nn.Module):
    """Steering = the brightness-weighted column of each frame; the state counts frames."""

    def init_state(self, batch, device):
        return torch.zeros(batch)

    def forward(self, x, state):  # x (1, T, H, W, 3) uint8
        w = x.float().mean(dim=(2, 4))  # (1, T, W)
        cols = torch.arange(x.shape[3], dtype=torch.float32)
        return ((w * cols).sum(-1) / w.sum(-1)).unsqueeze(-1), state + x.shape[1]


class _Layout:
    names = ["steering"]

    def denormalize(self, y):
        return y


class _Drive:
    def __init__(self, frames):
        self.frames = frames

    def read_frames(self, a, b):
        return self.frames[a:b]


def test_a_moved_frame_moves_a_position_reading_model_by_the_move():
    bench = bench_module("shift_response")
    frames = np.zeros((300, 6, 40, 3), np.uint8)
    frames[:, :, 20] = 255  # a line in column 20, well inside the frame
    drive = _Drive(frames)
    plain = bench.stream(_Centroid(), _Layout(), drive, 0, 300, 0)
    assert len(plain) == 300 and np.allclose(plain, 20)  # read across two chunks of 256
    assert np.allclose(bench.stream(_Centroid(), _Layout(), drive, 0, 300, 3), 23)
    assert np.allclose(bench.stream(_Centroid(), _Layout(), drive, 0, 300, -5), 15)
