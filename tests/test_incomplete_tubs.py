"""Tubs as they come off real cars (issue 25): sessions whose images were never copied,
catalogs the manifest forgot. Small tub v2 folders written into tmp_path."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from steertime.cli import app, main
from steertime.data import Cache, GroupCount, ReadOptions, prepare, read_drives, read_recording
from steertime.data.frames import skip_imageless_groups
from steertime.errors import DataError
from tests.conftest import tree_digest
from tests.test_formats_written import write_tub

runner = CliRunner()


def _tub(tmp_path, stale: int = 0):
    """30 records in sessions a, b, c; b's images were never copied, one of c's is gone;
    `stale` catalogs from an earlier recording lie in the folder, not in the manifest."""
    write_tub(tmp_path, 30, sessions=["a"] * 10 + ["b"] * 10 + ["c"] * 10)
    data = tmp_path / "data"
    for i in [*range(10, 20), 25]:
        (data / "images" / f"{i:04d}.png").unlink()
    for j in range(stale):
        lines = (data / "catalog_0.catalog").read_text().splitlines()
        old = [json.dumps({**json.loads(ln), "_session_id": "old"}) for ln in lines[:7]]
        (data / f"catalog_{j + 1}.catalog").write_text("\n".join(old) + "\n")
    return tmp_path


def test_imageless_session_is_skipped_named_and_counted(tmp_path):
    tub = _tub(tmp_path)
    before = tree_digest(tub)
    rec = read_recording(tub)
    assert [d.name.rsplit(":", 1)[1] for d in rec.drives] == ["a", "c"]
    assert [len(d) for d in rec.drives] == [10, 9]
    a, b, c = GroupCount("a", 10, 10, 10), GroupCount("b", 10, 0, 0), GroupCount("c", 10, 9, 9)
    assert rec.groups == [a, b, c]
    (note,) = rec.skipped
    assert note.startswith("session b: all 10 records name missing images")
    assert "catalog_0.catalog:11 … catalog_0.catalog:20" in note and "skipped" in note
    # Every drive carries the tub-wide note; the partial loss stays with its session.
    assert all(note in d.problems for d in rec.drives)
    assert any("1 records name missing images" in p for p in rec.drives[1].problems)
    assert not any("1 records name missing images" in p for p in rec.drives[0].problems)
    assert tree_digest(tub) == before


def test_strict_refuses_an_imageless_session(tmp_path):
    with pytest.raises(DataError, match=r"data: session b: all 10 records name missing images"):
        read_drives(_tub(tmp_path), options=ReadOptions(strict=True))


def test_tub_fails_only_when_nothing_remains(tmp_path, monkeypatch, capsys):
    tub = _tub(tmp_path)
    for p in (tub / "data" / "images").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"no session has any of its images.*session a: all 10"):
        read_drives(tub)
    monkeypatch.setattr(sys, "argv", ["steertime", "inspect", str(tub)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no session has any of its images" in err and "Traceback" not in err
    shutil.rmtree(tub / "data" / "images")
    with pytest.raises(DataError, match=r"images: the tub has no images/ folder"):
        read_drives(tub)


def test_stale_catalogs_are_not_read_and_counted(tmp_path):
    rec = read_recording(_tub(tmp_path, stale=2))
    assert [g.name for g in rec.groups] == ["a", "b", "c"]  # nothing from session "old"
    assert sum(len(d) for d in rec.drives) == 19
    note = (
        "2 catalogs in the folder were not read (catalog_1.catalog, catalog_2.catalog; 14 records)"
    )
    assert all(any(p.startswith(note) for p in d.problems) for d in rec.drives)


def test_inspect_and_prepare_through_the_cli(tmp_path):
    tub = _tub(tmp_path / "log", stale=1)
    r = runner.invoke(app, ["inspect", str(tub)])
    assert r.exit_code == 0, r.output
    rows = [ln.replace("│", " ").split() for ln in r.output.splitlines()]
    assert ["b", "10", "0", "0"] in rows and ["c", "10", "9", "9"] in rows
    assert "3 session(s), 30 records, 19 with images, 19 frames used" in r.output
    assert "1 catalog in the folder was not read (catalog_1.catalog; 7 records)" in r.output
    assert "session b: all 10 records name missing images" in r.output

    out = tmp_path / "cache"
    r = runner.invoke(app, ["prepare", str(tub), "--out", str(out), "--size", "24x32"])
    assert r.exit_code == 0, r.output
    assert "skipped session b: all 10 records" in r.output
    c = Cache.open(out)
    assert c.n_frames == 19 and [d.name.rsplit(":", 1)[1] for d in c.drives] == ["a", "c"]
    assert c.manifest["skipped"][0].startswith("session b: all 10 records")

    r = runner.invoke(app, ["prepare", str(tub), "--out", str(tmp_path / "c2"), "--strict"])
    assert isinstance(r.exception, DataError) and "session b" in str(r.exception)
    assert not (tmp_path / "c2").exists()


def test_python_prepare_records_skipped_sessions(tmp_path):
    c = prepare(_tub(tmp_path / "log"), tmp_path / "cache")
    assert c.n_frames == 19 and "session b" in c.manifest["skipped"][0]


def test_skip_imageless_groups_rule(tmp_path):
    problems: list[str] = []
    present = np.array([1, 0, 0, 0, 0, 1], bool)
    groups = ["x", "x", "y", "y", "y", "z"]
    labels = [f"r{i}" for i in range(6)]
    keep = skip_imageless_groups(present, groups, labels, tmp_path, False, problems, "rows", "bag")
    assert keep.tolist() == [True, True, False, False, False, True]
    assert problems == ["bag y: all 3 rows name missing images (rows r2 … r4); the bag is skipped"]
    assert skip_imageless_groups([True], ["x"], ["r0"], tmp_path, True, []).all()
    with pytest.raises(DataError, match="no epoch has any of its images"):
        skip_imageless_groups(
            [False] * 2, ["x", "y"], ["1", "2"], tmp_path, False, [], "rows", "epoch"
        )
