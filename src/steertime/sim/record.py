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
from steertime.sim.expert import Expert, speed_control
from steertime.sim.world import FPS, World

GAP_S = 10.0  # time gap between roads: the reader splits them into separate drives
SPEED_BUMPS = {"every_s": (8.0, 20.0), "length_s": (3.0, 8.0), "amplitude": (2.0, 5.0)}


class Perturbation:
    """Occasional smooth bumps added to what the car *executes* (not to the label), so the
    recording shows the expert recovering — data a model needs once its own small errors
    move the car (DART; PilotNet's shifted views). Steering bumps (degrees) put the car
    off-centre; speed bumps (m/s added to the speed the car tracks) make it too fast or
    too slow for the road while the `target_speed` label stays the expert's, so a model
    cannot learn to echo the speed it sees (the inertia problem, see sim/drive.py)."""

    def __init__(
        self,
        rng: np.random.Generator,
        fps: float,
        every_s=(6.0, 14.0),
        length_s=(0.8, 2.0),
        amplitude=(8.0, 25.0),  # deg of steering wheel (m/s for speed bumps)
    ) -> None:
        self.rng, self.fps = rng, fps
        self.every_s, self.length_s, self.amp = every_s, length_s, amplitude
        self.wait = int(rng.uniform(*every_s) * fps)
        self.bump: np.ndarray = np.zeros(0)

    def __call__(self) -> float:
        if len(self.bump):
            v, self.bump = float(self.bump[0]), self.bump[1:]
            return v
        self.wait -= 1
        if self.wait <= 0:
            n = max(2, int(self.rng.uniform(*self.length_s) * self.fps))
            sign = self.rng.choice([-1.0, 1.0])
            self.bump = sign * self.rng.uniform(*self.amp) * np.hanning(n)
            self.wait = int(self.rng.uniform(*self.every_s) * self.fps)
        return 0.0


def training_seeds(seed: int, n: int) -> list[int]:
    return [seed * 1000 + k for k in range(n)]


def heldout_seeds(seed: int, n: int) -> list[int]:
    """Roads never used for recording training data (a disjoint seed range)."""
    return [10_000_000 + seed * 1000 + k for k in range(n)]


def simulate(
    out: str | Path,
    minutes: float,
    seed: int = 0,
    fps: float = FPS,
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
        for road_seed in training_seeds(seed, n_roads):
            world = World(road_seed, dt=1.0 / fps, cam=cam, noise_seed=road_seed)
            expert = Expert(world.dt, np.random.default_rng(road_seed + 1))
            bump = Perturbation(np.random.default_rng(road_seed + 2), fps)
            speed_bump = Perturbation(np.random.default_rng(road_seed + 3), fps, **SPEED_BUMPS)
            for _ in range(min(per_road, n_frames - len(rows))):
                name = f"{len(rows):07d}.jpg"
                Image.fromarray(world.frame()).save(tmp / "images" / name, quality=92)
                wheel, throttle, brake = expert.act(world.road, world.state, world.s)
                tel = world.telemetry()
                rows.append(
                    {
                        "t": round(t0 + tel.t, 6),
                        "image": name,
                        "steering_deg": wheel,
                        "wheel_deg_measured": tel.wheel_deg,
                        "speed_mps": tel.speed,
                        "target_speed_mps": expert.v_target,
                        "torque_nm": tel.torque,
                        "throttle": throttle,
                        "brake": brake,
                        "lateral_offset_m": tel.offset,
                        "road": road_seed,
                    }
                )
                dv = speed_bump()
                if dv:
                    throttle, brake = speed_control(
                        world.state.v, expert.v_target + dv, expert.e.speed_gain
                    )
                world.step(wheel + bump(), throttle, brake)
                if progress:
                    progress(1)
                if world.at_end:
                    break
            t0 = rows[-1]["t"] + GAP_S
        pd.DataFrame(rows).to_csv(tmp / "log.csv", index=False)
        mapping = {
            "name": f"sim_seed{seed}",
            "csv": "log.csv",
            "frames": "images",
            "time": {"column": "t", "unit": "s"},
            "frame": {"column": "image"},
            "signals": {
                # The label is the expert's command (what a good driver does here), also
                # while a perturbation is moving the car off-centre.
                "steering": {"column": "steering_deg", "unit": "deg", "angle_of": "steering_wheel"},
                "wheel_measured": {"column": "wheel_deg_measured", "unit": "deg"},
                "speed": {"column": "speed_mps", "unit": "m/s"},
                # The expert's speed command (from the road ahead). A model that sees
                # motion learns to echo the *measured* speed; in the loop that echo keeps
                # the car at whatever speed it has (the "inertia problem"), so closed-loop
                # driving takes its speed command from `target_speed` when predicted.
                "target_speed": {"column": "target_speed_mps", "unit": "m/s"},
                "torque": {"column": "torque_nm", "unit": "N*m"},
                "throttle": {"column": "throttle", "unit": "fraction"},
                "brake": {"column": "brake", "unit": "fraction"},
                "lateral_offset": {"column": "lateral_offset_m", "unit": "m"},
            },
        }
        (tmp / "steertime.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return Path(out)
