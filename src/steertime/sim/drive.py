"""`steertime drive`: a trained model in the loop. Its steering (and speed, if it predicts
speed) moves the car; leaving the lane counts an intervention and puts the car back on
the lane centre. Autonomy as in NVIDIA's PilotNet paper: 1 − interventions·6 s / time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from steertime.sim.camera import CameraSpec
from steertime.sim.expert import ExpertParams, speed_control, target_speed
from steertime.sim.world import World
from steertime.stream.predictor import StreamingPredictor

INTERVENTION_S = 6.0  # the PilotNet paper's time charged per intervention
OFFSET_LIMIT = 1.0  # m from the lane centre: beyond this a safety driver would take over


@dataclass
class RoadResult:
    seed: int
    seconds: float
    metres: float
    interventions: int
    mean_abs_offset: float
    max_abs_offset: float
    mean_abs_wheel_rate: float  # deg/s: steering smoothness


@dataclass
class DriveReport:
    roads: list[RoadResult] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.roads)

    @property
    def interventions(self) -> int:
        return sum(r.interventions for r in self.roads)

    @property
    def autonomy(self) -> float:
        return max(0.0, 1.0 - self.interventions * INTERVENTION_S / max(self.seconds, 1e-9))

    def summary(self) -> dict:
        km = sum(r.metres for r in self.roads) / 1000
        n = sum(r.seconds for r in self.roads)
        return {
            "roads": len(self.roads),
            "minutes": self.seconds / 60,
            "km": km,
            "interventions": self.interventions,
            "autonomy_pct": 100 * self.autonomy,
            "interventions_per_km": self.interventions / max(km, 1e-9),
            "mean_abs_offset_m": sum(r.mean_abs_offset * r.seconds for r in self.roads)
            / max(n, 1e-9),
            "mean_abs_wheel_rate_degps": sum(r.mean_abs_wheel_rate * r.seconds for r in self.roads)
            / max(n, 1e-9),
            "per_road": [asdict(r) for r in self.roads],
        }


def speed_command(out: dict) -> float | None:
    """The model's speed command: its `target_speed` output, else its `speed` output.

    `speed` is the measured speed; a temporal model can read it off the motion and echo
    it, which in the loop holds the car at its current speed (Codevilla et al. 2019's
    inertia problem) — train on `target_speed` (recorded by `simulate`) to avoid that."""
    for name in ("target_speed", "speed"):
        if name in out:
            return out[name]
    return None


def drive_road(
    predictor: StreamingPredictor,
    seed: int,
    seconds: float,
    fps: float = 10.0,
    cam: CameraSpec | None = None,
    offset_limit: float = OFFSET_LIMIT,
    on_frame: Callable[[World, dict, np.ndarray, int], None] | None = None,
) -> RoadResult:
    cam = cam or CameraSpec(*(predictor.source_size or (160, 320)))
    world = World(seed, dt=1.0 / fps, cam=cam, noise_seed=seed)
    expert = ExpertParams()
    predictor.reset()
    interventions, offsets, rates = 0, [], []
    start_s = world.s
    for _ in range(int(round(seconds * fps))):
        frame = world.frame()
        out = predictor.step(frame, world.t)
        v_target = speed_command(out)
        if v_target is None:
            v_target = target_speed(world.road, world.s, world.state.v, expert)
        throttle, brake = speed_control(world.state.v, v_target, expert.speed_gain)
        world.step(out["steering"], throttle, brake)
        offsets.append(abs(world.offset))
        rates.append(abs(world.state.wheel_rate))
        if on_frame:
            on_frame(world, out, frame, interventions)
        if abs(world.offset) > offset_limit:
            interventions += 1
            world.place(world.s + 5.0)
            predictor.reset()  # the scene jumped: the model's memory no longer fits it
        if world.at_end:
            break
    return RoadResult(
        seed=seed,
        seconds=world.t,
        metres=world.s - start_s,
        interventions=interventions,
        mean_abs_offset=float(np.mean(offsets)),
        max_abs_offset=float(np.max(offsets)),
        mean_abs_wheel_rate=float(np.mean(rates)),
    )


def drive(
    predictor: StreamingPredictor,
    seeds: list[int],
    seconds: float,
    fps: float = 10.0,
    offset_limit: float = OFFSET_LIMIT,
    on_frame: Callable[[World, dict, np.ndarray, int], None] | None = None,
) -> DriveReport:
    report = DriveReport()
    for seed in seeds:
        report.roads.append(
            drive_road(predictor, seed, seconds, fps, offset_limit=offset_limit, on_frame=on_frame)
        )
    return report
