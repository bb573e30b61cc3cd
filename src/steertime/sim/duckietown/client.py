"""steertime's side of the step protocol: a simulator running in another process (and
another Python environment), stepped like a local one."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steertime.errors import SteertimeError
from steertime.sim.duckietown import protocol
from steertime.sim.duckietown.install import default_venv, is_installed, venv_python

BRIDGE = Path(__file__).with_name("bridge.py")


@dataclass
class Observation:
    frame: np.ndarray  # H x W x 3 uint8 RGB
    t: float  # s since reset (simulator clock)
    dist: float | None  # m from the lane centre, positive = left; None when not in a lane
    angle_rad: float | None  # heading relative to the lane
    ahead: list[float] | None  # [forward, left] m: the lane centre 0.25 m further along
    in_lane: bool
    done: bool  # the simulator ended the episode (off the road)
    speed: float  # m/s


class Bridge:
    """A bridge process (bridge.py) on pipes. `python` is the simulator environment's
    interpreter; the stub backend needs only numpy, so tests run it with steertime's."""

    def __init__(self, python: str | Path | None = None, backend: str = "duckietown") -> None:
        if python is None:
            if backend == "duckietown" and not is_installed():
                raise SteertimeError(
                    f"Duckietown is not installed in {default_venv()}: "
                    "run `steertime duckietown install`"
                )
            python = venv_python()
        # the simulator's chatter, kept for error messages; closed by close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), str(BRIDGE), "--backend", backend],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            hello = self._call({"op": "hello"})[0]
            if hello.get("protocol") != protocol.VERSION:
                raise SteertimeError(f"bridge speaks protocol {hello.get('protocol')}, not 1")
        except SteertimeError:
            self.close()  # no orphaned bridge process
            raise
        self.backend, self.maps = hello["backend"], list(hello["maps"])

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def _call(self, req: dict) -> tuple[dict, bytes]:
        try:
            protocol.send(self.proc.stdin, req)
            header, payload = protocol.receive(self.proc.stdout)
        except (protocol.ProtocolError, BrokenPipeError, OSError) as e:
            raise SteertimeError(
                f"simulator bridge died during {req['op']} ({e}): {self._stderr_tail()}"
            ) from None
        if not header.get("ok"):
            raise SteertimeError(f"simulator bridge: {header.get('error', 'failed')}")
        return header, payload

    def _obs(self, req: dict) -> Observation:
        h, payload = self._call(req)
        return Observation(
            frame=protocol.decode_frame(h, payload),
            t=float(h["t"]),
            dist=h["dist"],
            angle_rad=h["angle_rad"],
            ahead=h.get("ahead"),
            in_lane=bool(h["in_lane"]),
            done=bool(h["done"]),
            speed=float(h["speed"]),
        )

    def reset(
        self, map: str, seed: int, fps: float = 10.0, size: tuple[int, int] = (120, 160)
    ) -> Observation:
        if map not in self.maps:
            raise SteertimeError(
                f"unknown {self.backend} map {map!r}; known: {', '.join(self.maps)}"
            )
        return self._obs(
            {
                "op": "reset",
                "map": map,
                "seed": seed,
                "fps": fps,
                "height": size[0],
                "width": size[1],
            }
        )

    def step(self, v: float, omega: float) -> Observation:
        return self._obs({"op": "step", "action": [float(v), float(omega)]})

    def recover(self, ahead_m: float = 0.3) -> Observation:
        return self._obs({"op": "recover", "ahead_m": ahead_m})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call({"op": "close"})
                self.proc.wait(timeout=10)
            except (SteertimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
