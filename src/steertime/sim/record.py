"""`steertime simulate`: the expert drives procedurally generated roads; the recording is
written in the generic on-disk format (JPEG frames + CSV + steertime.yaml), so it goes
through the same reader and `prepare` path as real data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from steertime.atomic import atomic_dir
from steertime.sim.camera import CameraSpec
from steertime.sim.expert import Expert
from steertime.sim.world import World

GAP_S = 10.0  # time gap between roads: the reader splits them into separate drives


def training_seeds(seed: int, n: int) -> list[int]:
    return [seed * 1000 + k for k in range(n)]


def heldout_seeds(seed: int, n: int) -> list[int]:
    """Roads never used for recording training data (a disjoint seed range)."""
    return [10_000_000 + seed * 1000 + k for k in range(n)]


def simulate(
    out: str | Path,
    minutes: float,
    seed: int = 0,
    fps: float = 10.0,
    cam: CameraSpec = CameraSpec(),
    seconds_per_road: float = 120.0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Record `minutes` of expert driving on roads drawn from `seed`; returns the folder."""
    n_frames = int(round(minutes * 60 * fps))
    per_road = int(round(seconds_per_road * fps))
    n_roads = -(-n_frames // per_road)
    rows = []
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        t0 = 0.0
        for k, road_seed in enumerate(training_seeds(seed, n_roads)):
            world = World(road_seed, dt=1.0 / fps, cam=cam, noise_seed=road_seed)
            expert = Expert(world.dt, np.random.default_rng(road_seed + 1))
            for _ in range(min(per_road, n_frames - len(rows))):
                name = f"{len(rows):07d}.jpg"
                Image.fromarray(world.frame()).save(tmp / "images" / name, quality=92)
                wheel, throttle, brake = expert.act(world.road, world.state, world.s)
                tel = world.telemetry()
                rows.append(
                    {
                        "t": round(t0 + tel.t, 6),
                        "image": name,
                        "steering_deg": tel.wheel_deg,
                        "speed_mps": tel.speed,
                        "torque_nm": tel.torque,
                        "throttle": throttle,
                        "brake": brake,
                        "lateral_offset_m": tel.offset,
                        "road": road_seed,
                    }
                )
                world.step(wheel, throttle, brake)
                if progress:
                    progress(1)
                if world.at_end:
                    break
            t0 = rows[-1]["t"] + GAP_S
            del k
        pd.DataFrame(rows).to_csv(tmp / "log.csv", index=False)
        mapping = {
            "name": f"sim_seed{seed}",
            "csv": "log.csv",
            "frames": "images",
            "time": {"column": "t", "unit": "s"},
            "frame": {"column": "image"},
            "signals": {
                "steering": {"column": "steering_deg", "unit": "deg", "angle_of": "steering_wheel"},
                "speed": {"column": "speed_mps", "unit": "m/s"},
                "torque": {"column": "torque_nm", "unit": "N*m"},
                "throttle": {"column": "throttle", "unit": "fraction"},
                "brake": {"column": "brake", "unit": "fraction"},
                "lateral_offset": {"column": "lateral_offset_m", "unit": "m"},
            },
        }
        (tmp / "steertime.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return Path(out)
