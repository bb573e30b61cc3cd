"""benchmarks/ego_motion.py measures how fast the picture turns: its phase correlation must
find a known horizontal shift, sub-pixel and with its sign, or the benchmark's verdict
("the model already reads the turning") would rest on noise."""

from __future__ import annotations

import numpy as np

from tests.conftest import bench_module


def test_image_shift_finds_a_known_turn():
    ego = bench_module("ego_motion")
    rng = np.random.default_rng(0)
    world = rng.integers(0, 256, (40, 400, 3)).astype(np.float32)
    world = (world + np.roll(world, 1, 1) + np.roll(world, 1, 0)) / 3  # some smoothness
    # the camera pans right by 3 px a frame, then left by 2: the picture moves the other way
    xs = [100, 103, 106, 104, 102]
    frames = np.stack([world[:, x : x + 160] for x in xs]).astype(np.uint8)
    got = ego.image_shift(frames)
    assert got[0] == 0
    assert np.allclose(got[1:], [-3, -3, 2, 2], atol=0.3)
    # a half-pixel move (the average of two neighbours) lands between the whole pixels
    half = np.stack([world[:, 100:260], (world[:, 100:260] + world[:, 101:261]) / 2])
    assert -0.9 < ego.image_shift(half.astype(np.uint8))[1] < -0.1
