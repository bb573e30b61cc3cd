"""Paired comparison of closed-loop drives: intervals, clustering by road, bad reports."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from steertime.cli import app
from steertime.errors import SteertimeError
from steertime.sim.compare import compare_drives, load_roads
from steertime.sim.drive import RoadResult


def _drives(offsets: list[float], interventions: list[int] | None = None) -> list[RoadResult]:
    k = interventions or [0] * len(offsets)
    return [
        RoadResult(seed=100 + i, seconds=120.0, metres=2000.0, interventions=k[i],
                   mean_abs_offset=o, max_abs_offset=4 * o, mean_abs_wheel_rate=4.0)
        for i, o in enumerate(offsets)
    ]  # fmt: skip


def test_a_model_closer_to_the_centre_on_every_road_is_resolvably_better():
    rng = np.random.default_rng(0)
    b_off = rng.uniform(0.08, 0.12, 20)
    a, b = _drives(list(b_off - 0.02)), _drives(list(b_off))
    c = compare_drives(a, b)
    m = c["mean_abs_offset"]
    assert m["diff"] == pytest.approx(-0.02)
    assert m["ci95"][1] < 0 and m["a_better_roads"] == 20 and m["b_better_roads"] == 0
    assert c["max_abs_offset"]["diff"] == pytest.approx(-0.08)
    # neither intervened: autonomy cannot tell them apart, the offsets can
    assert c["autonomy_pct"] == {"a": 100.0, "b": 100.0, "diff": 0.0, "ci95": [0.0, 0.0]}


def test_autonomy_difference_counts_interventions_on_the_same_roads():
    a = _drives([0.1] * 10)
    b = _drives([0.1] * 10, [2, 3, 1, 2, 2, 3, 1, 2, 2, 1])
    au = compare_drives(a, b)["autonomy_pct"]
    assert au["b"] == pytest.approx(100 * (1 - 19 * 6 / 1200))
    assert au["diff"] == pytest.approx(100 * 19 * 6 / 1200)
    assert 0 < au["ci95"][0] <= au["diff"] <= au["ci95"][1]


def test_several_training_seeds_on_the_same_roads_resample_whole_roads():
    # Driving the same roads twice with identical results is no new evidence: the interval
    # must not narrow (it would if every drive were resampled on its own).
    rng = np.random.default_rng(1)
    a, b = _drives(list(rng.uniform(0.05, 0.15, 12))), _drives(list(rng.uniform(0.05, 0.15, 12)))
    once, twice = compare_drives(a, b), compare_drives(a + a, b + b)
    assert twice["roads"] == 24 and twice["road_seeds"] == 12
    assert twice["mean_abs_offset"]["diff"] == pytest.approx(once["mean_abs_offset"]["diff"])
    assert twice["mean_abs_offset"]["ci95"] == pytest.approx(once["mean_abs_offset"]["ci95"])


def test_under_five_roads_there_is_no_interval(tmp_path):
    # Two models, a closer to the centre on each of 4 roads: a bootstrap over 4 roads
    # would "exclude 0"; 4 roads are too few to say so.
    a, b = _drives([0.08, 0.09, 0.07, 0.08]), _drives([0.1, 0.11, 0.09, 0.1])
    c = compare_drives(a, b)
    assert c["mean_abs_offset"]["ci95"] is None and c["autonomy_pct"]["ci95"] is None
    assert c["mean_abs_offset"]["a_better_roads"] == 4  # the counts are still given
    assert compare_drives(a + a[:1], b + b[:1])["road_seeds"] == 4  # roads, not drives
    for name, x in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"per_road": [dataclasses.asdict(r) for r in x]})
        )
    args = ["drive-compare", "--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "b.json")]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "-0.020 (–)" in res.output and "no intervals under 5 roads" in res.output


def test_drives_on_different_roads_are_refused_by_road():
    a, b = _drives([0.1, 0.1]), _drives([0.1, 0.1])
    b[1] = dataclasses.replace(b[1], seed=7)
    with pytest.raises(SteertimeError, match="road 1: a drove seed 101, b seed 7"):
        compare_drives(a, b)
    with pytest.raises(SteertimeError, match="a has 2 roads and b 1"):
        compare_drives(a, b[:1])


def test_bad_drive_reports_name_the_file_and_row(tmp_path):
    with pytest.raises(SteertimeError, match="no such drive report"):
        load_roads(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SteertimeError, match="bad.json: not a JSON drive report"):
        load_roads(bad)
    bad.write_text(json.dumps({"autonomy_pct": 100}))
    with pytest.raises(SteertimeError, match="no 'per_road' list"):
        load_roads(bad)
    row = dataclasses.asdict(_drives([0.1])[0])
    bad.write_text(json.dumps({"per_road": [row, {**row, "seed": None} | {"extra": 1}]}))
    with pytest.raises(SteertimeError, match=r"bad.json: per_road\[1\] has"):
        load_roads(bad)


def test_drive_compare_cli_reads_reports_and_writes_json(tmp_path):
    paths = {}
    for name, off in (("a", 0.08), ("b", 0.1)):
        paths[name] = tmp_path / f"{name}.json"
        rows = [dataclasses.asdict(r) for r in _drives([off] * 5)]
        paths[name].write_text(json.dumps({"per_road": rows}))
    out = tmp_path / "cmp.json"
    args = ["drive-compare", "--a", str(paths["a"]), "--b", str(paths["b"]), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "mean_abs_offset" in res.output and "5 drives of 5 roads" in res.output
    assert json.loads(out.read_text())["mean_abs_offset"]["diff"] == pytest.approx(-0.02)
    res = CliRunner().invoke(app, ["drive-compare", "--a", str(paths["a"])])
    assert res.exit_code != 0
