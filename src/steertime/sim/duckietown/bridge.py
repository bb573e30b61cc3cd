"""The simulator side of the step protocol (protocol.py): a server on stdin/stdout.

Run by steertime as `VENV/bin/python bridge.py [--backend duckietown|stub]`, in the
simulator's own environment — so it imports nothing of steertime except protocol.py,
which sits beside it. `--check` renders and steps one episode and exits 0 on success
(the installer's smoke test).

Backends:
- `duckietown`: gym-duckietown's DuckietownEnv, rendered headless (EGL, Mesa llvmpipe);
  action = [v, omega] as DuckietownEnv takes it.
- `stub`: a unicycle on a straight lane with a synthetic picture, for the protocol tests
  (it needs only numpy, so it runs under steertime's own Python).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import protocol  # beside this file: the bridge runs as a script, not as part of steertime

LOOKAHEAD_M = 0.25  # the expert's pure-pursuit point: this far along the lane centre


class StubBackend:
    """A 1-D lane: offset d and heading phi, driven by [v, omega]; the frame draws the lane
    centre where the camera would see it, so a model can learn to steer from it."""

    maps = ["stub_straight", "stub_drift"]

    def reset(self, map: str, seed: int, fps: float, height: int, width: int) -> dict:
        if map not in self.maps:
            raise ValueError(f"unknown map {map!r}; stub maps: {self.maps}")
        rng = np.random.default_rng(seed)
        self.dt, self.h, self.w = 1.0 / fps, height, width
        self.drift = 0.3 if map == "stub_drift" else 0.0  # a constant curve to follow
        self.d, self.phi, self.t, self.v = (
            rng.uniform(-0.05, 0.05),
            rng.uniform(-0.1, 0.1),
            0.0,
            0.0,
        )
        return self.observe()

    def step(self, action: list) -> dict:
        v, omega = float(action[0]), float(action[1])
        self.phi += (self.drift - omega) * self.dt  # signs as Duckietown's lane pose
        self.d += v * math.sin(self.phi) * self.dt
        self.t, self.v = self.t + self.dt, v
        return self.observe()

    def recover(self, ahead_m: float) -> dict:
        self.d, self.phi = 0.0, 0.0
        return self.observe()

    def observe(self) -> dict:
        img = np.full((self.h, self.w, 3), 60, np.uint8)
        rows = np.arange(self.h // 2, self.h)
        depth = (rows - self.h / 2 + 1) / (self.h / 2)  # 1 at the bottom, → 0 at the horizon
        ahead = 0.3 / depth
        left = self.d + self.phi * ahead  # how far left the lane centre is, seen from the robot
        cols = np.clip(self.w / 2 - left * self.w * depth * 2, 0, self.w - 1).astype(int)
        for r, c in zip(rows, cols, strict=True):
            img[r, max(0, c - 2) : c + 3] = (240, 220, 40)
        done = abs(self.d) > 0.4
        # the lane centre LOOKAHEAD_M along the lane, in the robot's frame
        c, si = math.cos(self.phi), math.sin(self.phi)
        ahead = [LOOKAHEAD_M * c - self.d * si, LOOKAHEAD_M * si + self.d * c]
        return {
            "ahead": ahead,
            "frame": img,
            "t": self.t,
            "dist": self.d,
            "angle_rad": self.phi,
            "in_lane": not done,
            "done": done,
            "speed": self.v,
        }


class DuckietownBackend:
    """gym-duckietown, headless. One simulator is kept while map, rate and size stay."""

    def __init__(self) -> None:
        import pyglet

        pyglet.options["headless"] = True  # EGL: no display needed
        import logging

        logging.getLogger("gym-duckietown").setLevel(logging.WARNING)
        from gym_duckietown import simulator
        from gym_duckietown.envs import DuckietownEnv
        from gym_duckietown.simulator import NotInLane

        self.Env, self.NotInLane, self.env, self.key = DuckietownEnv, NotInLane, None, None
        self.sim = simulator
        import duckietown_world

        root = os.path.join(os.path.dirname(duckietown_world.__file__), "data", "gd1", "maps")
        self.maps = sorted(f[:-5] for f in os.listdir(root) if f.endswith(".yaml"))

    def reset(self, map: str, seed: int, fps: float, height: int, width: int) -> dict:
        if map not in self.maps:
            raise ValueError(f"unknown map {map!r}")
        key = (map, fps, height, width)
        if self.key != key:
            if self.env is not None:
                self.env.close()
            self.env = self.Env(
                seed=seed,
                map_name=map,
                max_steps=10**9,  # episodes end when steertime says so
                domain_rand=False,
                camera_width=width,
                camera_height=height,
                accept_start_angle_deg=4,
                full_transparency=True,
                distortion=False,
                frame_rate=fps,
                draw_curve=False,
                draw_bbox=False,
            )
            self.key = key
        self.env.seed(seed)  # the start pose comes from the simulator's seeded generator
        self.env.reset()
        # Duckietown may start the robot anywhere on a drivable tile, even in the other
        # lane: start every episode on the centre of the lane it is heading along.
        self.good = (self.env.cur_pos.copy(), float(self.env.cur_angle))
        return self.recover(0.0)

    def step(self, action: list) -> dict:
        frame, _, done, _ = self.env.step(np.array([float(action[0]), float(action[1])]))
        return self.observe(frame, bool(done))

    def recover(self, ahead_m: float) -> dict:
        """Back onto the lane centre, ahead_m further along it (from the last pose that was
        in the lane if the robot has left the road)."""
        env = self.env
        pos, angle = env.cur_pos, env.cur_angle
        point, tangent = env.closest_curve_point(pos, angle)
        if point is None:
            pos, angle = self.good
            point, tangent = env.closest_curve_point(pos, angle)
        step = 0.05
        for _ in range(int(ahead_m / step)):
            nxt, tan = env.closest_curve_point(
                point + step * tangent, math.atan2(-tangent[2], tangent[0])
            )
            if nxt is None:
                break
            point, tangent = nxt, tan
        env.cur_pos = np.array(point, float)
        env.cur_angle = math.atan2(-tangent[2], tangent[0])
        env.speed = 0.0
        # The pose lives in the dynamics model's state too (as Simulator.reset sets it);
        # without this the next step would jump back to where the robot was.
        sim = self.sim
        q = env.cartesian_from_weird(env.cur_pos, env.cur_angle)
        v0 = sim.geometry.se2_from_linear_angular(np.array([0.0, 0.0]), 0.0)
        env.state = sim.get_DB18_nominal(delay=0.15).initialize(c0=(q, v0), t0=env.timestamp)
        return self.observe(env.render_obs(), False)

    def ahead(self) -> list[float] | None:
        """The lane centre LOOKAHEAD_M further along, in the robot's frame [forward, left]
        (as gym-duckietown's pure-pursuit example finds it)."""
        env, length = self.env, LOOKAHEAD_M
        point, tangent = env.closest_curve_point(env.cur_pos, env.cur_angle)
        if point is None:
            return None
        for _ in range(10):  # past the map's end: look less far
            target, _ = env.closest_curve_point(point + tangent * length, env.cur_angle)
            if target is not None:
                break
            length /= 2
        else:
            return None
        vec, a = target - env.cur_pos, env.cur_angle
        forward = float(vec[0] * math.cos(a) - vec[2] * math.sin(a))
        left = float(-(vec[0] * math.sin(a) + vec[2] * math.cos(a)))
        return [forward, left]

    def observe(self, frame: np.ndarray, done: bool) -> dict:
        env = self.env
        try:
            lp = env.get_lane_pos2(env.cur_pos, env.cur_angle)
            dist, angle, in_lane = float(lp.dist), float(lp.angle_rad), True
            if abs(dist) < 0.05:
                self.good = (env.cur_pos.copy(), float(env.cur_angle))
        except self.NotInLane:
            dist, angle, in_lane = float("nan"), float("nan"), False
        return {
            "ahead": self.ahead() if in_lane else None,
            "frame": frame,
            "t": float(env.timestamp),
            "dist": dist,
            "angle_rad": angle,
            "in_lane": in_lane,
            "done": done,
            "speed": float(env.speed),
        }


def _reply_observation(out, obs: dict) -> None:
    fields, payload = protocol.frame_payload(obs.pop("frame"))
    # JSON has no NaN: a pose that does not exist is null
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in obs.items()}
    protocol.send(out, {"ok": True, **clean, **fields}, payload)


def serve(backend, inp, out) -> None:
    while True:
        try:
            req, _ = protocol.receive(inp)
        except protocol.ProtocolError:
            return  # steertime went away
        op = req.get("op")
        try:
            if op == "hello":
                protocol.send(
                    out,
                    {
                        "ok": True,
                        "protocol": protocol.VERSION,
                        "backend": backend.name,
                        "maps": backend.maps,
                    },
                )
            elif op == "reset":
                obs = backend.reset(
                    str(req["map"]),
                    int(req.get("seed", 0)),
                    float(req.get("fps", 10.0)),
                    int(req.get("height", 120)),
                    int(req.get("width", 160)),
                )
                _reply_observation(out, obs)
            elif op == "step":
                _reply_observation(out, backend.step(req["action"]))
            elif op == "recover":
                _reply_observation(out, backend.recover(float(req.get("ahead_m", 0.3))))
            elif op == "close":
                protocol.send(out, {"ok": True})
                return
            else:
                protocol.send(out, {"ok": False, "error": f"unknown op {op!r}"})
        except Exception as e:  # noqa: BLE001 - any failure goes back as one line
            protocol.send(out, {"ok": False, "error": f"{op}: {type(e).__name__}: {e}"})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["duckietown", "stub"], default="duckietown")
    ap.add_argument("--check", action="store_true", help="render and step once, then exit")
    args = ap.parse_args()
    # The protocol owns the real stdout; anything the simulator prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    backend = StubBackend() if args.backend == "stub" else DuckietownBackend()
    backend.name = args.backend
    if args.check:
        obs = backend.reset(
            backend.maps[0] if args.backend == "stub" else "loop_empty", 0, 10.0, 120, 160
        )
        obs = backend.step([0.2, 0.0])
        ok = obs["frame"].shape == (120, 160, 3) and obs["frame"].std() > 0
        print("check ok" if ok else "check failed: blank frame", file=sys.stderr)
        return 0 if ok else 1
    serve(backend, sys.stdin.buffer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
