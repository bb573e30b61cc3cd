"""Record an expert and drive a model closed-loop in Duckietown, through the bridge.

The same shape as the built-in simulator (sim/record.py, sim/drive.py): the expert's
recording is the generic on-disk format with recovery perturbations, the drive report is
a `DriveReport` (so `drive-compare` pairs two models' drives), with distances in metres
of Duckietown's world (a lane is 0.29 m wide, the robot ~0.2 m/s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from steertime.atomic import atomic_dir
from steertime.errors import SteertimeError
from steertime.sim.drive import DriveReport, RoadResult
from steertime.sim.duckietown.client import Bridge, Observation
from steertime.sim.record import GAP_S, Perturbation, heldout_seeds, training_seeds

FPS = 10.0
SIZE = (120, 160)  # the Duckiebot camera's 120x160 (HEIGHTxWIDTH)
SPEED = 0.2  # DuckietownEnv's velocity command (≈ 0.14 m/s of the robot)
# Leaving the lane: the robot's centre more than this from its lane's centre (the lane is
# 0.29 m wide; Duckietown itself ends the episode at ≈ 0.2 m, off the drivable tiles).
OFFSET_LIMIT = 0.15
RECOVER_AHEAD_M = 0.3  # an intervention puts the robot back on the lane this much further on
# Training maps are loops without intersections; held-out maps are disjoint from them, so
# closed-loop scores are on roads never seen in training. udem1, held out, has 4-way
# intersections: the expert takes the lane curve its heading matches best, a model must
# choose from the picture alone (the hardest held-out map).
TRAIN_MAPS = ("loop_empty", "zigzag_dists", "ETHZ_loop", "small_loop")
HELDOUT_MAPS = ("small_loop_cw", "Montreal_loop", "ETH_small_loop_1", "udem1")
# Recovery bumps added to the executed omega (the label stays the expert's)
BUMPS = {"every_s": (4.0, 10.0), "length_s": (0.5, 1.5), "amplitude": (0.5, 1.5)}


def expert_omega(obs: Observation, v: float = SPEED) -> float:
    """Pure pursuit on the lane centre 0.25 m ahead: curvature 2·left/L², and
    DuckietownEnv's omega command is curvature x velocity command. Falls back to PD on
    the lane pose when there is no look-ahead point."""
    if obs.ahead is not None:
        fwd, left = obs.ahead
        return v * 2.0 * left / max(fwd * fwd + left * left, 1e-6)
    if obs.dist is None or obs.angle_rad is None:
        return 0.0
    return 4.0 * obs.dist + 1.5 * obs.angle_rad


def episodes(seed: int, n: int, maps: Sequence[str], heldout: bool) -> list[tuple[str, int]]:
    """(map, episode seed) pairs: the seed also picks the map, so a drive report's per-road
    seeds identify the episode for `drive-compare`."""
    seeds = heldout_seeds(seed, n) if heldout else training_seeds(seed, n)
    return [(maps[s % len(maps)], s) for s in seeds]


def record(
    bridge: Bridge,
    out: str | Path,
    minutes: float,
    seed: int = 0,
    maps: Sequence[str] = TRAIN_MAPS,
    seconds_per_episode: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Record `minutes` of the expert with recovery perturbations (generic format)."""
    n_frames = int(round(minutes * 60 * FPS))
    per_ep = int(round(seconds_per_episode * FPS))
    rows: list[dict] = []
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        t0 = 0.0
        for map_name, ep in episodes(seed, -(-n_frames // per_ep), maps, heldout=False):
            obs = bridge.reset(map_name, ep, FPS, SIZE)
            bump = Perturbation(np.random.default_rng(ep + 2), FPS, **BUMPS)
            start = len(rows)
            for _ in range(min(per_ep, n_frames - len(rows))):
                name = f"{len(rows):07d}.jpg"
                Image.fromarray(obs.frame).save(tmp / "images" / name, quality=92)
                omega = expert_omega(obs)
                executed = omega + bump()
                rows.append(
                    {
                        "t": round(t0 + obs.t, 6),
                        "image": name,
                        "omega": omega,
                        "omega_executed": executed,
                        "speed_mps": obs.speed,
                        "lane_offset_m": obs.dist,
                        "heading_rad": obs.angle_rad,
                        "map": map_name,
                        "episode": ep,
                    }
                )
                obs = bridge.step(SPEED, executed)
                if progress:
                    progress(1)
                if obs.done or not obs.in_lane or abs(obs.dist) > OFFSET_LIMIT:
                    # a bump the expert could not undo: the rest would teach nothing
                    obs = bridge.recover(RECOVER_AHEAD_M)
            if len(rows) > start:
                t0 = rows[-1]["t"] + GAP_S
        if not rows:
            raise SteertimeError(f"{out}: nothing recorded (minutes={minutes})")
        pd.DataFrame(rows).to_csv(tmp / "log.csv", index=False)
        mapping = {
            "name": f"duckietown_seed{seed}",
            "csv": "log.csv",
            "frames": "images",
            "time": {"column": "t", "unit": "s"},
            "frame": {"column": "image"},
            "signals": {
                # The expert's command (DuckietownEnv's omega), also during a bump
                "steering": {"column": "omega", "unit": "duckietown_omega"},
                "wheel_measured": {"column": "omega_executed", "unit": "duckietown_omega"},
                "speed": {"column": "speed_mps", "unit": "m/s"},
                "lateral_offset": {"column": "lane_offset_m", "unit": "m"},
            },
        }
        (tmp / "steertime.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return Path(out)


class ExpertPolicy:
    """The expert as a stand-in predictor, for its own closed-loop figures."""

    def reset(self) -> None:
        pass


def drive(
    bridge: Bridge,
    predictor,  # a StreamingPredictor (or ExpertPolicy)
    eps: Sequence[tuple[str, int]],
    seconds: float,
    offset_limit: float = OFFSET_LIMIT,
    on_frame: Callable[[Observation, dict, int, str], None] | None = None,
) -> DriveReport:
    """Drive each (map, seed) episode for `seconds`; leaving the lane (|offset| above the
    limit, no lane under the robot, or Duckietown ending the episode) is an
    intervention: the robot is put back on the lane centre further on and the model's
    memory reset."""
    report = DriveReport()
    expert = isinstance(predictor, ExpertPolicy)
    for map_name, ep in eps:
        obs = bridge.reset(map_name, ep, FPS, SIZE)
        predictor.reset()
        interventions, offsets, rates, metres = 0, [], [], 0.0
        last = 0.0
        for _ in range(int(round(seconds * FPS))):
            out = {"steering": expert_omega(obs)} if expert else predictor.step(obs.frame, obs.t)
            omega = float(out["steering"])
            obs = bridge.step(SPEED, omega)
            metres += obs.speed / FPS
            rates.append(abs(omega - last) * FPS)
            last = omega
            off = abs(obs.dist) if obs.dist is not None else math.inf
            offsets.append(min(off, offset_limit))  # (beyond the limit it is an intervention)
            if on_frame:
                on_frame(obs, out, interventions, map_name)
            if obs.done or not obs.in_lane or off > offset_limit:
                interventions += 1
                obs = bridge.recover(RECOVER_AHEAD_M)
                predictor.reset()  # the scene jumped: the memory no longer fits it
        report.roads.append(
            RoadResult(
                seed=ep,
                seconds=len(offsets) / FPS,
                metres=metres,
                interventions=interventions,
                mean_abs_offset=float(np.mean(offsets)),
                max_abs_offset=float(np.max(offsets)),
                mean_abs_wheel_rate=float(np.mean(rates)),
            )
        )
    return report


def video_frame(obs: Observation, out: dict, interventions: int, map_name: str) -> np.ndarray:
    """`drive --video`: the camera frame the model saw (x3) and a status line."""
    from PIL import ImageDraw

    cam = Image.fromarray(obs.frame).resize((obs.frame.shape[1] * 3, obs.frame.shape[0] * 3))
    img = Image.new("RGB", (cam.width, cam.height + 24), (20, 20, 20))
    img.paste(cam, (0, 0))
    off = "--" if obs.dist is None else f"{obs.dist:+.3f} m"
    ImageDraw.Draw(img).text(
        (6, cam.height + 6),
        f"{map_name} t {obs.t:5.1f}s offset {off} omega {out.get('steering', 0):+.2f} "
        f"interventions {interventions}",
        fill=(255, 255, 255),
    )
    return np.asarray(img)
