"""`steertime render`: the camera video with true and predicted steering wheels drawn on it.

Like the Udacity winners' demo videos: two wheels rotated by their angles (driver and
model), a strip chart of the last seconds, and speed/torque readouts where present.
Encoded as H.264 with PyAV; written to a temporary file and renamed when complete.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from steertime.data import Drive
from steertime.data.frames import FrameError
from steertime.evaluate.heldout import split_labels
from steertime.models.layout import Z90
from steertime.stream.predictor import StreamingPredictor, tell_truth
from steertime.video import h264_writer

WIDTH = 640  # output width; height keeps the camera's aspect ratio (+ a chart band)
CHART_H = 110
CHART_S = 5.0
TRUE_C, PRED_C = (40, 200, 80), (230, 60, 50)
BAND_C = (110, 45, 40)  # the model's 90% interval (runs trained with train.spread)


def wheel_degrees(value: float, unit: dict) -> float:
    """Angle to draw: steering-wheel degrees where known, else a ±90° scale."""
    if unit.get("to_radians"):
        deg = math.degrees(value * unit["to_radians"])
        # Road-wheel angles are ~15x smaller than the steering wheel's: scale for visibility.
        return deg * 15 if unit.get("angle_of") == "road_wheel" else deg
    return value * 90.0


def draw_wheel(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, deg: float, color) -> None:
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=color, width=max(2, int(r / 8)))
    for spoke in (90, 210, 330):  # a three-spoke wheel; 90° is straight up at zero angle
        a = math.radians(spoke - deg)
        d.line(
            [cx, cy, cx + r * math.cos(a), cy - r * math.sin(a)],
            fill=color,
            width=max(2, int(r / 10)),
        )
    d.ellipse([cx - r / 5, cy - r / 5, cx + r / 5, cy + r / 5], fill=color)


SPLIT_C = {"train": (90, 90, 90), "val": (200, 140, 0), "test": (0, 120, 200)}


def compose(
    frame: np.ndarray,
    t: float,
    true: dict,
    pred: dict,
    units: dict,
    history: deque,
    name: str,
    split: str | None = None,
) -> np.ndarray:
    """One overlay frame; `split` ('train', 'val', 'test', '') tags frames of the drive the
    run trained on, so the held-out part is visible."""
    h0, w0 = frame.shape[:2]
    h = int(round(WIDTH * h0 / w0 / 2)) * 2
    img = Image.new("RGB", (WIDTH, h + CHART_H), (20, 20, 20))
    img.paste(Image.fromarray(frame).resize((WIDTH, h), Image.Resampling.BILINEAR), (0, 0))
    d = ImageDraw.Draw(img)
    r = h / 8
    unit = units.get(name, {})
    if name in true:
        draw_wheel(d, WIDTH - 2.6 * r, h - 1.3 * r, r, wheel_degrees(true[name], unit), TRUE_C)
    sd = pred.get(f"{name}_std")
    if name in pred:
        cx, cy = WIDTH - 1.2 * r, h - 1.3 * r
        if sd is not None and math.isfinite(sd):
            # The 90% interval as an arc on the rim: where the top of the wheel may be.
            lo, hi = (wheel_degrees(pred[name] + k * Z90 * sd, unit) for k in (-1, 1))
            lo, hi = max(lo, hi - 359.0), min(hi, lo + 359.0)
            box = [cx - 1.15 * r, cy - 1.15 * r, cx + 1.15 * r, cy + 1.15 * r]
            d.arc(box, lo - 90.0, hi - 90.0, fill=PRED_C, width=max(3, int(r / 6)))
        draw_wheel(d, cx, cy, r, wheel_degrees(pred[name], unit), PRED_C)
    spread = f" ±{Z90 * sd:.3f} (90%)" if sd is not None else ""
    text = [
        f"t {t:7.2f}s   {name}: driver "
        + (f"{true[name]:+.3f}" if name in true else "-")
        + f"  model {pred.get(name, float('nan')):+.3f}{spread} {unit.get('name', '')}"
    ]
    for extra in ("speed", "torque", "throttle"):
        if extra in pred or extra in true:
            tv = f"{true[extra]:.2f}" if extra in true else "-"
            pv = f"{pred[extra]:.2f}" if extra in pred else "-"
            text.append(f"{extra}: driver {tv}  model {pv} {units.get(extra, {}).get('name', '')}")
    for i, line in enumerate(text):
        d.text((8, 6 + 14 * i), line, fill=(255, 255, 255))
    if split is not None:
        tag = {"train": "TRAINED ON", "val": "HELD OUT (val)", "test": "HELD OUT (test)"}.get(
            split, "not in the cache"
        )
        box = (WIDTH - 8 - 7 * len(tag) - 8, 6, WIDTH - 8, 24)
        d.rectangle(box, fill=SPLIT_C.get(split, (60, 60, 60)))
        d.text((box[0] + 4, 9), tag, fill=(255, 255, 255))
    # strip chart of the last CHART_S seconds
    history.append((t, true.get(name), pred.get(name), sd))
    while history and history[0][0] < t - CHART_S:
        history.popleft()
    vals = [v for _, a, b, _ in history for v in (a, b) if v is not None and math.isfinite(v)]
    span = max(max((abs(v) for v in vals), default=1.0), 1e-6)
    top = h + 8
    mid = top + (CHART_H - 16) / 2

    def y(v: float) -> float:  # clamped to the chart: a wide interval must not overdraw
        return min(max(mid - (v / span) * (CHART_H - 16) / 2, top), top + CHART_H - 16)

    band = [
        (WIDTH * (1 - (t - ht) / CHART_S), p, q)
        for ht, _, p, q in history
        if p is not None and q is not None and math.isfinite(p) and math.isfinite(q)
    ]
    if len(band) > 1:
        upper = [(x, y(p + Z90 * q)) for x, p, q in band]
        lower = [(x, y(p - Z90 * q)) for x, p, q in band]
        d.polygon(upper + lower[::-1], fill=BAND_C)
    d.line([0, mid, WIDTH, mid], fill=(80, 80, 80))
    for idx, color in ((1, TRUE_C), (2, PRED_C)):
        pts = [
            (WIDTH * (1 - (t - ht) / CHART_S), mid - (row[idx] / span) * (CHART_H - 16) / 2)
            for row in history
            for ht in [row[0]]
            if row[idx] is not None and math.isfinite(row[idx])
        ]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
    d.text(
        (8, h + CHART_H - 16),
        f"last {CHART_S:g} s   green: driver   red: model"
        + ("   shaded: its 90% interval" if sd is not None else ""),
        fill=(200, 200, 200),
    )
    return np.asarray(img)


def render(
    predictor: StreamingPredictor,
    drives: list[Drive],
    out: str | Path,
    fps: float | None = None,
    output: str = "steering",
    progress: Callable[[int], None] | None = None,
    heldout_from: str | Path | None = None,
) -> Path:
    """The overlay video of `drives`. `heldout_from`: the cache the run trained on (its
    `RunMeta.data_path`); frames of its drives are tagged trained-on / held out. A
    predictor built with `adapt_gamma` is told each frame's truth after drawing it, so
    the interval shown recalibrates online (`steertime.stream.adaptive`)."""
    fps = fps or round(float(np.median([d.rate_hz for d in drives])) or 30)
    units = {n: u.to_dict() for n, u in drives[0].units.items()}
    for k, n in enumerate(predictor.layout.names):
        units.setdefault(n, predictor.layout.units[k] if k < len(predictor.layout.units) else {})
    with h264_writer(out, fps) as video:
        for d in drives:
            splits = split_labels(heldout_from, d)
            predictor.reset()
            history: deque = deque()
            t0 = float(d.timestamps[0])  # show time since the drive's start
            for i, frame in d.frames.iter_frames():
                if progress:
                    progress(1)
                if isinstance(frame, FrameError):
                    continue
                t = float(d.timestamps[i])
                pred = predictor.step(frame, t)
                true = {n: float(v[i]) for n, v in d.signals.items()}
                tag = None if splits is None else str(splits[i])
                video.write(compose(frame, t - t0, true, pred, units, history, output, tag))
                tell_truth(predictor, true)  # with adapt_gamma: learnt after the frame
    return Path(out)
