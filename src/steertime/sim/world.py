"""The world: a road, a car on it, physics in small sub-steps, and the camera."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from steertime.sim.camera import CameraSpec, render
from steertime.sim.road import Road, make_road
from steertime.sim.vehicle import VehicleParams, VehicleState, step

FPS = 10.0  # frames (and control steps) per second unless a caller asks otherwise
SUBSTEPS = 5


@dataclass
class Telemetry:
    t: float
    s: float
    offset: float  # m from the right lane's centre, positive = left
    heading_error: float
    wheel_deg: float
    speed: float
    torque: float


class World:
    def __init__(
        self,
        road: Road | int,
        dt: float = 0.1,
        cam: CameraSpec = CameraSpec(),
        params: VehicleParams = VehicleParams(),
        noise_seed: int = 0,
    ) -> None:
        self.road = make_road(road) if isinstance(road, int) else road
        self.dt, self.cam, self.p = dt, cam, params
        self.rng = np.random.default_rng(noise_seed)
        self.t = 0.0
        self.place(20.0, v=10.0)

    def place(self, s: float, v: float | None = None) -> None:
        """Put the car on the right lane's centre at arc length s, aligned with the road."""
        x, y = self.road.lane_center(s)
        _, _, h, _ = self.road.at(s)
        v = self.state.v if v is None else v
        self.state = VehicleState(x=float(x), y=float(y), yaw=float(h), v=v)
        self.s = s
        self.offset, self.heading_error = 0.0, 0.0

    def step(self, wheel_cmd: float, throttle: float, brake: float) -> Telemetry:
        for _ in range(SUBSTEPS):
            self.state = step(self.state, wheel_cmd, throttle, brake, self.dt / SUBSTEPS, self.p)
        self.t += self.dt
        self.s, self.offset, h = self.road.project(self.state.x, self.state.y, self.s)
        self.heading_error = math.remainder(self.state.yaw - h, 2 * math.pi)
        return self.telemetry()

    def telemetry(self) -> Telemetry:
        st = self.state
        return Telemetry(
            self.t, self.s, self.offset, self.heading_error, st.wheel_deg, st.v, st.torque(self.p)
        )

    def frame(self) -> np.ndarray:
        st = self.state
        return render(self.road, st.x, st.y, st.yaw, self.s, self.cam, self.rng)

    @property
    def at_end(self) -> bool:
        return self.s > self.road.length - 300.0
