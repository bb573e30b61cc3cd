"""Kinematic bicycle model with a steering actuator, speed dynamics and steering torque.

Units: steering in degrees of steering-wheel angle, speed in m/s, torque in N·m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VehicleParams:
    wheelbase: float = 2.7  # m
    steering_ratio: float = 15.0  # steering-wheel angle / road-wheel angle
    steer_tau: float = 0.12  # s, first-order lag of the steering actuator
    max_wheel_deg: float = 450.0
    max_accel: float = 3.0  # m/s² at full throttle
    max_brake: float = 7.0  # m/s² at full brake
    drag: float = 0.0005  # 1/m: deceleration = drag·v²
    torque_per_lat_acc: float = 0.8  # N·m per m/s² of lateral acceleration (self-aligning)
    torque_per_rate: float = 0.01  # N·m per deg/s of steering-wheel rate (damping)


@dataclass(frozen=True)
class VehicleState:
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    v: float = 0.0
    wheel_deg: float = 0.0  # actual steering-wheel angle
    wheel_rate: float = 0.0  # deg/s

    def road_wheel(self, p: VehicleParams) -> float:
        return math.radians(self.wheel_deg) / p.steering_ratio

    def lateral_accel(self, p: VehicleParams) -> float:
        return self.v**2 * math.tan(self.road_wheel(p)) / p.wheelbase

    def torque(self, p: VehicleParams) -> float:
        return p.torque_per_lat_acc * self.lateral_accel(p) + p.torque_per_rate * self.wheel_rate


def step(
    s: VehicleState, wheel_cmd: float, throttle: float, brake: float, dt: float, p: VehicleParams
) -> VehicleState:
    cmd = max(-p.max_wheel_deg, min(p.max_wheel_deg, wheel_cmd))
    wheel = s.wheel_deg + (cmd - s.wheel_deg) * min(1.0, dt / p.steer_tau)
    rate = (wheel - s.wheel_deg) / dt
    acc = (
        p.max_accel * min(max(throttle, 0.0), 1.0)
        - p.max_brake * min(max(brake, 0.0), 1.0)
        - p.drag * s.v**2
    )
    v = max(0.0, s.v + acc * dt)
    delta = math.radians(wheel) / p.steering_ratio
    yaw = s.yaw + v / p.wheelbase * math.tan(delta) * dt
    return replace(
        s,
        x=s.x + v * math.cos(yaw) * dt,
        y=s.y + v * math.sin(yaw) * dt,
        yaw=yaw,
        v=v,
        wheel_deg=wheel,
        wheel_rate=rate,
    )
