"""Procedural roads: a centreline whose curvature varies smoothly, generated from a seed.

The road is sampled every `DS` metres along its arc length s: position (x, y), heading
and curvature. Pieces are straights, gentle and sharp curves and S-bends, joined by
clothoid-like ramps (curvature changes linearly), so steering never has to jump.
Each seed also draws the road's look (colours, lighting, shadows, noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DS = 0.5  # metres between centreline samples
LANE_WIDTH = 3.6  # metres; the road has two lanes, the car keeps to the right one


@dataclass(frozen=True)
class Look:
    asphalt: tuple[float, float, float]
    grass: tuple[float, float, float]
    sky: tuple[float, float, float]
    light: float  # overall brightness
    noise: float  # per-pixel noise (weather-like grain)
    shadow_period: float  # metres between shadow bands (0: none)
    shadow_strength: float


@dataclass
class Road:
    seed: int
    s: np.ndarray  # (N,) arc length, m
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray  # rad
    curvature: np.ndarray  # 1/m, positive = left
    look: Look

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: float | np.ndarray):
        """Interpolated (x, y, heading, curvature) at arc length s (clamped to the road)."""
        s = np.clip(s, 0.0, self.length)
        i = np.minimum((s / DS).astype(int), len(self.s) - 2)
        f = s / DS - i
        lerp = lambda a: a[i] * (1 - f) + a[i + 1] * f  # noqa: E731
        return lerp(self.x), lerp(self.y), lerp(self.heading), lerp(self.curvature)

    def lane_center(self, s, offset: float = LANE_WIDTH / 2):
        """Point `offset` metres right of the centreline (the right lane's centre)."""
        x, y, h, _ = self.at(s)
        return x + offset * np.sin(h), y - offset * np.cos(h)

    def project(self, px: float, py: float, s_guess: float, window: float = 30.0):
        """(s, lateral offset from the right-lane centre, heading) of the nearest point.

        Positive offset: left of the lane centre.
        """
        n = len(self.s)
        lo = min(max(0, int((s_guess - window) / DS)), n - 2)
        hi = max(min(n, int((s_guess + window) / DS) + 2), lo + 2)
        dx, dy = px - self.x[lo:hi], py - self.y[lo:hi]
        k = int(np.argmin(dx * dx + dy * dy))
        j = lo + k
        h = self.heading[j]
        along = dx[k] * np.cos(h) + dy[k] * np.sin(h)
        lateral = -dx[k] * np.sin(h) + dy[k] * np.cos(h)  # left of centreline
        return float(self.s[j] + along), float(lateral + LANE_WIDTH / 2), float(h)


def _pieces(rng: np.random.Generator, length: float) -> np.ndarray:
    """Target curvature per sample: a sequence of pieces joined by linear ramps."""
    kappa: list[float] = []
    current = 0.0
    while len(kappa) * DS < length:
        kind = rng.choice(["straight", "gentle", "sharp", "s_bend"], p=[0.3, 0.35, 0.2, 0.15])
        sign = rng.choice([-1.0, 1.0])
        if kind == "straight":
            parts = [(0.0, rng.uniform(40, 150))]
        elif kind == "gentle":
            parts = [(sign / rng.uniform(150, 400), rng.uniform(40, 120))]
        elif kind == "sharp":
            parts = [(sign / rng.uniform(50, 110), rng.uniform(25, 70))]
        else:
            r = rng.uniform(70, 160)
            parts = [(sign / r, rng.uniform(30, 60)), (-sign / r, rng.uniform(30, 60))]
        for target, run in parts:
            ramp = int(rng.uniform(15, 35) / DS)
            kappa += list(np.linspace(current, target, ramp, endpoint=False))
            kappa += [target] * int(run / DS)
            current = target
    return np.asarray(kappa[: int(length / DS)])


def make_road(seed: int, length: float = 4000.0) -> Road:
    rng = np.random.default_rng(seed)
    kappa = _pieces(rng, length)
    heading = np.concatenate([[0.0], np.cumsum(kappa[:-1] * DS)])
    x = np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1]) * DS)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1]) * DS)])
    light = rng.uniform(0.65, 1.15)
    look = Look(
        asphalt=tuple(rng.uniform(60, 115) + rng.uniform(-6, 6, 3)),
        grass=tuple(rng.uniform([50, 90, 30], [120, 160, 80])),
        sky=tuple(rng.uniform([120, 150, 190], [190, 210, 245])),
        light=light,
        noise=rng.uniform(2, 10),
        shadow_period=rng.choice([0.0, rng.uniform(15, 40)]),
        shadow_strength=rng.uniform(0.3, 0.6),
    )
    return Road(seed, np.arange(len(kappa)) * DS, x, y, heading, kappa, look)
