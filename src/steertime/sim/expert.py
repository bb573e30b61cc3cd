"""The expert driver: pure pursuit with a look-ahead and a reaction delay, slowing for curves.

Its steering depends on the road ahead and on the recent past (the delay and the
actuator lag), with a little smoothed noise — like a human's.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from steertime.sim.road import DS, Road
from steertime.sim.vehicle import VehicleParams, VehicleState


@dataclass(frozen=True)
class ExpertParams:
    lookahead_min: float = 7.0  # m
    lookahead_time: float = 0.9  # s: look-ahead grows with speed
    delay: float = 0.2  # s of reaction delay
    max_lat_acc: float = 2.2  # m/s²: slows down for curves
    v_max: float = 20.0  # m/s
    speed_gain: float = 0.4
    noise_deg: float = 2.0  # std of the smoothed steering noise


def pursuit_wheel_deg(
    road: Road, st: VehicleState, s_car: float, lookahead: float, p: VehicleParams
) -> float:
    tx, ty = road.lane_center(s_car + lookahead)
    dx, dy = tx - st.x, ty - st.y
    fwd = math.cos(st.yaw) * dx + math.sin(st.yaw) * dy
    left = -math.sin(st.yaw) * dx + math.cos(st.yaw) * dy
    alpha = math.atan2(left, fwd)
    delta = math.atan2(2 * p.wheelbase * math.sin(alpha), max(lookahead, 1e-3))
    return math.degrees(delta) * p.steering_ratio


def target_speed(road: Road, s_car: float, v: float, e: ExpertParams) -> float:
    """Fast enough, but slow enough for the sharpest curve in the braking distance."""
    horizon = max(40.0, 3.0 * v)
    i, j = int(s_car / DS), int(min(road.length, s_car + horizon) / DS) + 1
    k = float(np.max(np.abs(road.curvature[i:j]))) if j > i else 0.0
    return min(e.v_max, math.sqrt(e.max_lat_acc / max(k, 1e-6)))


def speed_control(v: float, v_target: float, gain: float) -> tuple[float, float]:
    u = gain * (v_target - v)
    return (min(u, 1.0), 0.0) if u >= 0 else (0.0, min(-u, 1.0))


class Expert:
    def __init__(
        self,
        dt: float,
        rng: np.random.Generator,
        e: ExpertParams = ExpertParams(),
        p: VehicleParams = VehicleParams(),
    ) -> None:
        self.e, self.p, self.dt, self.rng = e, p, dt, rng
        self.queue: deque = deque([0.0] * max(1, round(e.delay / dt)))
        self.noise = 0.0
        self.v_target = 0.0  # m/s: the speed it is aiming for (recorded as `target_speed`)

    def act(self, road: Road, st: VehicleState, s_car: float) -> tuple[float, float, float]:
        """-> (steering-wheel command deg, throttle, brake)."""
        look = max(self.e.lookahead_min, self.e.lookahead_time * st.v)
        self.queue.append(pursuit_wheel_deg(road, st, s_car, look, self.p))
        self.noise = 0.9 * self.noise + self.rng.normal(0, self.e.noise_deg * math.sqrt(1 - 0.81))
        wheel = self.queue.popleft() + self.noise
        self.v_target = target_speed(road, s_car, st.v, self.e)
        throttle, brake = speed_control(st.v, self.v_target, self.e.speed_gain)
        return wheel, throttle, brake
