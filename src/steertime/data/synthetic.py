"""A small generated drive in the generic on-disk format (images + CSV + steertime.yaml).

It lets a fresh machine exercise the whole data path with no download. The road bends
with a smooth random curvature; steering follows the curvature a little ahead of the
car, and lane dashes move with speed, so both are visible in the frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from steertime.atomic import atomic_dir

HEIGHT, WIDTH = 120, 320
HORIZON = 40


def _smooth_noise(rng: np.random.Generator, n: int, scale: float, width: int) -> np.ndarray:
    kernel = np.hanning(width)
    kernel /= kernel.sum()
    return np.convolve(rng.normal(0, scale, n + width), kernel, mode="same")[:n]


def road_frame(curv: float, offset: float, travelled: float, shade: float) -> np.ndarray:
    """Render one camera frame (HEIGHT, WIDTH, 3) uint8 of a road ahead."""
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:HORIZON] = (np.array([135, 170, 215]) * shade).astype(np.uint8)
    rows = np.arange(HORIZON, HEIGHT)
    depth = (HEIGHT - HORIZON) / (rows - HORIZON + 1.0)  # distance ahead, ~1..80
    centre = WIDTH / 2 + (curv * 400 * depth**2 - offset * 60) / depth
    half = 150 / depth
    x = np.arange(WIDTH)[None, :]
    on_road = np.abs(x - centre[:, None]) < half[:, None]
    edge = np.abs(np.abs(x - centre[:, None]) - half[:, None]) < np.maximum(1, 6 / depth)[:, None]
    dash = ((depth + travelled) % 4.0 < 2.0)[:, None] & (
        np.abs(x - centre[:, None]) < np.maximum(0.6, 4 / depth)[:, None]
    )
    ground = np.where(on_road[..., None], [90, 90, 95], [60, 120, 50]) * shade
    ground = np.where((edge | dash)[..., None], [235, 235, 220], ground)
    img[HORIZON:] = ground.astype(np.uint8)
    return img


def write_synthetic_drive(
    out: str | Path, seconds: float = 20.0, fps: float = 10.0, seed: int = 0
) -> Path:
    """Write a generated drive to `out` (atomically) and return its folder."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    curv = _smooth_noise(rng, n + 10, 0.02, 30)
    steering_deg = 300 * curv[5 : n + 5]  # looks ~0.5 s ahead
    speed = 12 + 3 * np.sin(np.arange(n) / (fps * 7)) + _smooth_noise(rng, n, 0.5, 20)
    offset = _smooth_noise(rng, n, 0.3, 15)
    travelled = np.cumsum(speed / fps)
    with atomic_dir(out, overwrite=False) as tmp:
        (tmp / "images").mkdir()
        names = []
        for i in range(n):
            shade = 0.85 + 0.15 * np.sin(i / 37.0)
            frame = road_frame(curv[i], offset[i], travelled[i], shade)
            name = f"{i:06d}.jpg"
            Image.fromarray(frame).save(tmp / "images" / name, quality=90)
            names.append(name)
        pd.DataFrame(
            {
                "t": np.arange(n) / fps,
                "image": names,
                "steering_deg": steering_deg,
                "speed_kmh": speed * 3.6,
            }
        ).to_csv(tmp / "log.csv", index=False)
        mapping = {
            "name": "synthetic",
            "csv": "log.csv",
            "frames": "images",
            "time": {"column": "t", "unit": "s"},
            "frame": {"column": "image"},
            "signals": {
                "steering": {"column": "steering_deg", "unit": "deg", "angle_of": "steering_wheel"},
                "speed": {"column": "speed_kmh", "unit": "km/h"},
            },
        }
        (tmp / "steertime.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return Path(out)
