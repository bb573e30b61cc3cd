"""A forward camera: perspective projection of the flat road into an RGB image.

For each image row below the horizon the ground distance is known (flat ground, camera
height, focal length); where the road's centreline sits at that distance is interpolated
from centreline samples transformed into the camera frame. Each pixel then gets its
offset from the centreline and its arc length, from which lane lines, dashes, verges and
shadows follow. Lines are anti-aliased by their coverage of the pixel's footprint.
Everything is numpy over whole rows, which is what makes it fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steertime.sim.road import DS, LANE_WIDTH, Road

EDGE_W, CENTER_W = 0.15, 0.12  # line widths, m
DASH, GAP = 3.0, 6.0  # centre dashes, m
VERGE_W = 0.6


@dataclass(frozen=True)
class CameraSpec:
    height: int = 160
    width: int = 320
    fov_deg: float = 70.0
    mount_height: float = 1.4  # m above the road
    horizon: float = 0.40  # horizon row as a fraction of the image height

    @property
    def focal(self) -> float:
        return (self.width / 2) / np.tan(np.radians(self.fov_deg) / 2)


def _coverage(dist: np.ndarray, half: float, pix: np.ndarray) -> np.ndarray:
    """Fraction of a pixel of lateral size `pix` covered by a line of half-width `half`."""
    return np.clip((half - dist) / pix + 0.5, 0.0, 1.0)


def render(
    road: Road,
    x: float,
    y: float,
    yaw: float,
    s_car: float,
    cam: CameraSpec = CameraSpec(),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(cam.height, cam.width, 3) uint8 RGB view from the car at (x, y, yaw)."""
    look = road.look
    h, w, f = cam.height, cam.width, cam.focal
    cy = cam.horizon * h
    img = np.empty((h, w, 3), np.float32)

    # Sky: a vertical gradient above the horizon.
    top = int(np.ceil(cy))
    grad = np.linspace(0.75, 1.0, max(top, 1))[:, None, None]
    img[:top] = np.asarray(look.sky, np.float32) * grad

    # Centreline ahead in camera coordinates (forward z, right X).
    s = np.arange(max(0.0, s_car - 5), min(road.length, s_car + 250), DS)
    cx_, cy_, ch, _ = road.at(s)
    dx, dy = cx_ - x, cy_ - y
    fwd = np.cos(yaw) * dx + np.sin(yaw) * dy
    right = np.sin(yaw) * dx - np.cos(yaw) * dy
    # Keep the first pass through each depth (a road curving back is hidden anyway).
    mono = np.maximum.accumulate(fwd) + np.arange(len(fwd)) * 1e-6

    rows = np.arange(top, h)
    z = f * cam.mount_height / (rows + 0.5 - cy)  # (R,) ground distance per row
    xc = np.interp(z, mono, right)
    phi = np.interp(z, mono, ch - yaw)
    s_row = np.interp(z, mono, s)
    cosphi = np.cos(phi)
    u = np.arange(w) + 0.5 - w / 2
    X = u[None, :] * (z / f)[:, None]  # (R, W) lateral position, m
    d = (X - xc[:, None]) * cosphi[:, None]  # offset right of the centreline
    pix = (z / f * cosphi)[:, None] + 1e-6  # lateral pixel footprint, m
    ad = np.abs(d)

    road_c = np.asarray(look.asphalt, np.float32)
    grass = np.asarray(look.grass, np.float32)
    verge = road_c * 0.5 + grass * 0.3 + np.float32(25)
    paint = np.float32([235, 235, 225])
    on_road = _coverage(ad, LANE_WIDTH, pix)[..., None]
    on_verge = _coverage(ad, LANE_WIDTH + VERGE_W, pix)[..., None]
    g = grass * (1 - on_verge) + verge * on_verge
    g = g * (1 - on_road) + road_c * on_road
    edge = _coverage(np.abs(ad - (LANE_WIDTH - 0.3)), EDGE_W / 2, pix)
    dash_on = ((s_row + 0.0) % (DASH + GAP) < DASH).astype(np.float32)[:, None]
    centre = _coverage(ad, CENTER_W / 2, pix) * dash_on
    line = np.maximum(edge, centre)[..., None]
    g = g * (1 - line) + paint * line
    if look.shadow_period > 0:
        band = ((s_row % look.shadow_period) < 4.0)[:, None] & (d > -1.0) & (d < LANE_WIDTH + 2)
        g = g * (1 - look.shadow_strength * band[..., None])
    fog = (1 - np.exp(-z / 180.0))[:, None, None]
    g = g * (1 - fog) + np.asarray(look.sky, np.float32) * fog
    img[top:] = g

    img *= look.light
    if rng is not None and look.noise > 0:
        img += _grain(h, w, rng) * look.noise
    return np.clip(img, 0, 255).astype(np.uint8)


_GRAIN: dict[tuple[int, int], np.ndarray] = {}


def _grain(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise: a fixed texture shifted randomly each frame (drawing fresh
    normals for every pixel would cost more than the rest of the rendering)."""
    if (h, w) not in _GRAIN:
        _GRAIN[(h, w)] = (
            np.random.default_rng(0).standard_normal((2 * h, 2 * w, 3)).astype(np.float32)
        )
    tex = _GRAIN[(h, w)]
    i, j = rng.integers(0, h), rng.integers(0, w)
    return tex[i : i + h, j : j + w]
