"""`drive --video`: the camera the model sees beside a bird's-eye view of the car on the road."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from steertime.models.layout import Z90
from steertime.sim.road import LANE_WIDTH
from steertime.sim.world import World

SIDE = 360  # px, bird's-eye view
METRES = 60.0  # the bird's-eye view spans this many metres


def birdseye(world: World) -> Image.Image:
    """A car-up map of the road around the car (metres → pixels, the car at the bottom third)."""
    img = Image.new("RGB", (SIDE, SIDE), (60, 110, 50))
    d = ImageDraw.Draw(img)
    st, road = world.state, world.road
    s = np.arange(max(0.0, world.s - 20), min(road.length, world.s + 60), 0.5)
    x, y, h, _ = road.at(s)
    scale = SIDE / METRES
    c, si = math.cos(st.yaw), math.sin(st.yaw)

    def to_px(px: np.ndarray, py: np.ndarray) -> list[tuple[float, float]]:
        dx, dy = px - st.x, py - st.y
        fwd, left = c * dx + si * dy, -si * dx + c * dy
        return list(zip(SIDE / 2 - left * scale, SIDE * 2 / 3 - fwd * scale, strict=True))

    left_edge = to_px(x - LANE_WIDTH * np.sin(h), y + LANE_WIDTH * np.cos(h))
    right_edge = to_px(x + LANE_WIDTH * np.sin(h), y - LANE_WIDTH * np.cos(h))
    d.polygon(left_edge + right_edge[::-1], fill=(85, 85, 90))
    d.line(left_edge, fill=(235, 235, 225), width=2)
    d.line(right_edge, fill=(235, 235, 225), width=2)
    d.line(to_px(x, y), fill=(235, 235, 225), width=1)
    lane = to_px(*road.lane_center(s))
    d.line(lane, fill=(120, 180, 255), width=1)  # the lane centre the car should hold
    cw, cl = 1.8 * scale / 2, 4.5 * scale / 2
    cx, cy = SIDE / 2, SIDE * 2 / 3
    d.rectangle([cx - cw, cy - cl, cx + cw, cy + cl], fill=(230, 60, 50))
    return img


def compose(
    world: World, frame: np.ndarray, out: dict, interventions: int, asking: bool = False
) -> np.ndarray:
    """One video frame; `asking`: the model's takeover request stands (`drive
    --takeover-spread`), shown as a banner over the camera."""
    cam = Image.fromarray(frame).resize((480, int(480 * frame.shape[0] / frame.shape[1]) // 2 * 2))
    h = max(cam.height, SIDE)
    img = Image.new("RGB", (480 + SIDE, h + 40), (20, 20, 20))
    img.paste(cam, (0, 0))
    img.paste(birdseye(world), (480, 0))
    text = (
        f"t {world.t:6.1f}s  road {world.road.seed}  offset {world.offset:+.2f} m  "
        f"speed {world.state.v:5.1f} m/s  model steering {out.get('steering', 0):+6.1f}"
        + (f" ±{Z90 * out['steering_std']:.1f}" if "steering_std" in out else "")
        + " deg  "
        f"interventions {interventions}"
    )
    more = ""
    if "torque" in out:
        more += f"torque car {world.telemetry().torque:+.2f} model {out['torque']:+.2f} N*m  "
    if out.get("fault"):  # the camera gave no usable image: memory (or a held output) drives
        more += f"CAMERA {out['fault'].upper()} ({out['status']})"
    draw = ImageDraw.Draw(img)
    if asking:
        draw.rectangle([8, 8, 150, 30], fill=(200, 30, 30))
        draw.text((16, 13), "TAKE OVER, PLEASE", fill=(255, 255, 255))
    draw.text((8, h + 6), text, fill=(255, 255, 255))
    draw.text((8, h + 22), more, fill=(255, 200, 80))
    return np.asarray(img)
