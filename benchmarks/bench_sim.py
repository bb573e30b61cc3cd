"""Simulator speed: camera rendering frames/s on one core, and `simulate` throughput.

python benchmarks/bench_sim.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from steertime.sim import CameraSpec, World, simulate


def render_fps(h: int, w: int, frames: int) -> float:
    world = World(3, cam=CameraSpec(h, w))
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(frames // 5):
            world.step(5.0 * np.sin(i / 30), 0.2, 0.0)  # move so every frame differs
            world.frame()
            if world.at_end:
                world.place(20.0)
        rates.append((frames // 5) / (time.perf_counter() - t0))
    return statistics.median(rates)


def physics_only_fps(frames: int) -> float:
    world = World(3)
    t0 = time.perf_counter()
    for i in range(frames):
        world.step(5.0 * np.sin(i / 30), 0.2, 0.0)
        if world.at_end:
            world.place(20.0)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    a = ap.parse_args()
    phys = physics_only_fps(a.frames)
    res = {
        "physics_steps_per_s": round(phys),
        "render_plus_physics_66x200_fps": round(render_fps(66, 200, a.frames)),
        "render_plus_physics_160x320_fps": round(render_fps(160, 320, a.frames)),
    }
    with tempfile.TemporaryDirectory() as t:
        t0 = time.perf_counter()
        simulate(Path(t) / "sim", 2.0)
        res["simulate_160x320_jpeg_fps"] = round(1200 / (time.perf_counter() - t0))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
