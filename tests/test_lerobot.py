"""LeRobot v3.0 export and import: the layout LeRobot loads, and round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import read_drives
from steertime.data.drive import assemble_drives
from steertime.data.frames import ArrayFrames, FrameError
from steertime.data.lerobot import CAMERA_KEY, ExportOptions, export_dataset, export_lerobot
from steertime.data.resolve import resolve
from steertime.data.units import DEG_STEERING_WHEEL, MPS
from tests.hmb_bags import write_hmb_bag

runner = CliRunner()
# float32 columns, as LeRobot stores state and action: relative error below this
SIGNAL_RTOL = 1e-6
# the default lossy H.264 (yuv420p, CRF 18) on small frames whose colour changes every few
# pixels (chroma subsampling dominates): mean |error| per frame, in levels of 255
H264_MEAN_ABS = 8.0


def _frames(d) -> list[np.ndarray]:
    out = []
    for _, f in d.frames.iter_frames():
        assert not isinstance(f, FrameError), f
        out.append(f.astype(np.int16))
    return out


def _assert_lerobot_column_types(root, info: dict) -> None:
    """Each Parquet column has the type LeRobot casts it to (its
    get_hf_features_from_features): shape [1] a scalar, [n] a list of n; else it fails
    to load (checked against lerobot 0.4.4 by benchmarks/lerobot_load_check.py)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    for key, ft in info["features"].items():
        if ft["dtype"] == "video":
            assert key not in schema.names, key
            continue
        typ = schema.field(key).type
        if ft["shape"] == [1]:
            assert not pa.types.is_list(typ) and not pa.types.is_fixed_size_list(typ), key
            assert str(typ) == {"float32": "float", "float64": "double"}.get(
                ft["dtype"], ft["dtype"]
            ), key
        else:
            assert pa.types.is_fixed_size_list(typ) and typ.list_size == ft["shape"][0], key


def test_lossless_round_trip_from_bags_keeps_frames_signals_times(tmp_path):
    write_hmb_bag(tmp_path / "bags" / "a.bag", 25, noise=20)
    write_hmb_bag(tmp_path / "bags" / "b.bag", 10, first_frame=1000, noise=20)
    info = export_dataset(tmp_path / "bags", tmp_path / "lr", ExportOptions(codec="lossless"))
    root = tmp_path / "lr"
    for rel in (
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        f"videos/{CAMERA_KEY}/chunk-000/file-000.mp4",
    ):
        assert (root / rel).is_file(), rel
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert info["features"]["action"]["names"] == ["steering", "torque"]
    assert info["features"]["observation.state"]["names"] == ["speed"]
    assert info["features"][CAMERA_KEY]["shape"] == [48, 64, 3]
    data = pd.read_parquet(root / "data/chunk-000/file-000.parquet")
    np.testing.assert_allclose(data["timestamp"], data["frame_index"] / 20, atol=1e-6)
    assert data["index"].tolist() == list(range(35))
    eps = pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    assert eps["dataset_from_index"].tolist() == [0, 25]
    assert eps[f"videos/{CAMERA_KEY}/from_timestamp"].tolist() == [0.0, 1.25]
    _assert_lerobot_column_types(root, info)
    stats = json.loads((root / "meta/stats.json").read_text())
    assert stats["action"]["max"][1] == pytest.approx(0.5) and stats["action"]["count"] == [35]

    assert resolve(root).format == "lerobot"
    before, after = read_drives(tmp_path / "bags"), read_drives(root)
    assert [d.name for d in after] == [d.name for d in before] == ["a", "b"]
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a.timestamps, b.timestamps) and np.array_equal(a.rows, b.rows)
        for k in a.signals:
            np.testing.assert_allclose(b.signals[k], a.signals[k], rtol=SIGNAL_RTOL, atol=1e-7)
            assert b.units[k] == a.units[k]
        for fa, fb in zip(_frames(a), _frames(b), strict=True):
            assert np.array_equal(fa, fb)  # lossless: every RGB value


def _textured(i: int) -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    r = 128 + 100 * np.sin((x + 2 * i) / 6.0)
    g = 128 + 100 * np.cos((y - i) / 5.0)
    b = 128 + 80 * np.sin((x + y + 3 * i) / 8.0)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def test_h264_round_trip_is_within_the_stated_tolerance(tmp_path):
    n = 40
    t = 100.0 + np.arange(n) / 10.0
    (d,) = assemble_drives(
        name="drive",
        source="test",
        format="test",
        timestamps=t,
        signals={"steering": np.linspace(-30, 30, n), "speed": np.linspace(3, 5, n)},
        units={"steering": DEG_STEERING_WHEEL, "speed": MPS},
        frames=ArrayFrames(n, _textured),
    )
    export_lerobot([d], tmp_path / "lr")
    (b,) = read_drives(tmp_path / "lr")
    assert np.array_equal(b.timestamps, t) and b.units["steering"] == DEG_STEERING_WHEEL
    errs = [np.abs(f - _textured(i)).mean() for i, f in enumerate(_frames(b))]
    assert len(errs) == n and max(errs) <= H264_MEAN_ABS, max(errs)
    # the right frame at the right time: frame i is nearer its own picture than its neighbours
    for i, f in enumerate(_frames(b)[1:-1], 1):
        assert errs[i] < min(np.abs(f - _textured(j)).mean() for j in (i - 1, i + 1))


def test_cli_exports_a_cache_and_refuses_an_existing_folder(tmp_path):
    write_hmb_bag(tmp_path / "log" / "a.bag", 20)
    args = ["prepare", str(tmp_path / "log"), "--out", str(tmp_path / "c"), "--size", "24x32"]
    assert runner.invoke(app, [*args, "--guard", "1"]).exit_code == 0
    r = runner.invoke(app, ["export-dataset", str(tmp_path / "c"), str(tmp_path / "lr")])
    assert r.exit_code == 0, r.output
    assert "1 episode(s), 20 frames at 20 fps" in r.output
    (d,) = read_drives(tmp_path / "lr")
    assert len(d) == 20 and _frames(d)[0].shape == (24, 32, 3)  # the cache's frames
    r = runner.invoke(app, ["export-dataset", str(tmp_path / "c"), str(tmp_path / "lr")])
    assert r.exit_code != 0 and "already exists" in str(r.exception or r.output)


def test_a_foreign_v3_dataset_reads_on_its_nominal_clock(tmp_path):
    """A LeRobot dataset not written by steertime: no source_* columns, no units."""
    write_hmb_bag(tmp_path / "log" / "a.bag", 12)
    export_dataset(tmp_path / "log", tmp_path / "lr")
    info_path = tmp_path / "lr" / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    del info["steertime"]
    for k in ("source_timestamp", "source_row"):
        del info["features"][k]
    info_path.write_text(json.dumps(info))
    data = tmp_path / "lr" / "data" / "chunk-000" / "file-000.parquet"
    pd.read_parquet(data).drop(columns=["source_timestamp", "source_row"]).to_parquet(data)
    (d,) = read_drives(tmp_path / "lr")
    assert d.name == "episode_000000" and len(d) == 12
    np.testing.assert_allclose(d.timestamps, np.arange(12) / 20, atol=1e-6)
    assert d.units["steering"].name == "unknown" and d.rows.tolist() == list(range(12))
