"""Readers on small logs written by the tests in each format (incl. Udacity real-car)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from steertime.data import ReadOptions, detect_format, read_drives
from steertime.data.readers.generic import mapping_from_pairs
from tests.conftest import write_images, write_video


def write_udacity_real(root, n=12):
    """interpolated.csv as udacity-driving-reader writes it: 3 cameras interleaved."""
    rows = []
    t0 = 1479424215880976321
    for i in range(n):
        for cam in ("center", "left", "right"):
            ts = t0 + i * 50_000_000 + {"center": 0, "left": 1, "right": 2}[cam] * 1000
            rows.append(
                {
                    "index": f"2016-11-17 23:10:{i:02d}",
                    "timestamp": ts,
                    "width": 64,
                    "height": 48,
                    "frame_id": f"{cam}_camera",
                    "filename": f"{cam}/{ts}.png",
                    "angle": 0.01 * i,
                    "torque": -0.1 * i,
                    "speed": 10 + i,
                    "lat": 37.4,
                    "long": -122.1,
                    "alt": 10.0,
                }
            )
    df = pd.DataFrame(rows)
    for cam in ("center", "left", "right"):
        (root / cam).mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for f in df["filename"]:
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / f)
    df.to_csv(root / "interpolated.csv", index=False)
    return df


def test_udacity_real(tmp_path):
    write_udacity_real(tmp_path)
    assert detect_format(tmp_path) == "udacity_real"
    (d,) = read_drives(tmp_path)
    assert len(d) == 12
    assert np.allclose(np.diff(d.timestamps), 0.05)
    assert np.allclose(d.signals["steering"], 0.01 * np.arange(12))
    assert d.units["steering"].to_radians == 1.0 and d.units["torque"].name == "N*m"
    assert "left_camera" in d.problems[0]


def write_generic_images(root, n=20, extra=None):
    names = write_images(root / "img", n)
    df = pd.DataFrame({"ms": np.arange(n) * 100, "file": names, "deg": np.linspace(-10, 10, n)})
    df["kmh"] = 36.0
    df.to_csv(root / "log.csv", index=False)
    m = {
        "csv": "log.csv",
        "frames": "img",
        "time": {"column": "ms", "unit": "ms"},
        "frame": {"column": "file"},
        "signals": {
            "steering": {"column": "deg", "unit": "deg", "angle_of": "steering_wheel"},
            "speed": {"column": "kmh", "unit": "km/h"},
        },
        **(extra or {}),
    }
    (root / "steertime.yaml").write_text(yaml.safe_dump(m))
    return df


def test_generic_images_yaml(tmp_path):
    write_generic_images(tmp_path)
    assert detect_format(tmp_path) == "generic"
    (d,) = read_drives(tmp_path)
    assert len(d) == 20 and np.allclose(d.signals["speed"], 10.0)
    assert d.units["steering"].to_radians == pytest.approx(np.pi / 180)


def test_generic_video_with_map_pairs(tmp_path):
    write_video(tmp_path / "v.mp4", 15)
    pd.DataFrame({"frame": np.arange(15), "angle": np.arange(15.0)}).to_csv(
        tmp_path / "s.csv", index=False
    )
    m = mapping_from_pairs(
        ["csv=s.csv", "frames=v.mp4", "fps=30", "frame=frame", "steering=angle:rad"]
    )
    (d,) = read_drives(tmp_path, "generic", ReadOptions(mapping=m))
    assert len(d) == 15 and np.allclose(np.diff(d.timestamps), 1 / 30)
    frames = [f for _, f in d.frames.iter_frames()]
    assert len(frames) == 15 and frames[0].shape == (48, 64, 3)


def test_generic_toml(tmp_path):
    write_generic_images(tmp_path)
    (tmp_path / "steertime.yaml").unlink()
    (tmp_path / "steertime.toml").write_text(
        'csv = "log.csv"\nframes = "img"\n[time]\ncolumn = "ms"\nunit = "ms"\n'
        '[frame]\ncolumn = "file"\n[signals.steering]\ncolumn = "deg"\nunit = "deg"\n'
    )
    (d,) = read_drives(tmp_path)
    assert len(d) == 20 and set(d.signals) == {"steering"}


def write_tub(root, n=30, deleted=(), sessions=None, image_names=None, modes=None):
    data = root / "data"
    names = write_images(data / "images", n)
    names = image_names or names
    recs = []
    for i in range(n):
        recs.append(
            {
                "_index": i,
                "_session_id": (sessions or ["s0"] * n)[i],
                "_timestamp_ms": 1_000_000 + 50 * i,
                "cam/image_array": names[i],
                "user/angle": np.sin(i / 5),
                "user/throttle": 0.3,
                "user/mode": (modes or ["user"] * n)[i],
            }
        )
    (data / "catalog_0.catalog").write_text("".join(json.dumps(r) + "\n" for r in recs))
    lines = [
        ["cam/image_array", "user/angle", "user/throttle", "user/mode"],
        ["image_array", "float", "float", "str"],
        {},
        {"created_at": 0, "sessions": {}},
        {
            "paths": ["catalog_0.catalog"],
            "current_index": n,
            "max_len": 1000,
            "deleted_indexes": list(deleted),
        },
    ]
    (data / "manifest.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_donkey_deleted_indexes_and_sessions(tmp_path):
    write_tub(tmp_path, 30, deleted=[3, 4], sessions=["a"] * 15 + ["b"] * 15)
    drives = read_drives(tmp_path)
    assert [len(d) for d in drives] == [13, 15]
    assert 3 not in drives[0].rows and 4 not in drives[0].rows
    assert drives[0].name.endswith(":a") and drives[1].name.endswith(":b")
    assert any("deleted" in p for p in drives[0].problems)


def test_donkey_skips_pilot_driven_records_unless_kept(tmp_path):
    modes = ["user"] * 10 + ["local"] * 5 + ["local_angle"] * 3 + ["user"] * 12
    write_tub(tmp_path, 30, modes=modes)
    drives = read_drives(tmp_path)
    assert sum(len(d) for d in drives) == 22
    assert not set(range(10, 18)) & set(np.concatenate([d.rows for d in drives]).tolist())
    note = next(p for p in drives[0].problems if "pilot" in p)
    assert "8 records" in note and "3 local_angle" in note and "5 local" in note
    assert "--keep-pilot" in note
    kept = read_drives(tmp_path, options=ReadOptions(keep_pilot=True))
    assert sum(len(d) for d in kept) == 30
    assert not any("pilot" in p for d in kept for p in d.problems)
