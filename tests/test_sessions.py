"""The RC builder's protocol, end to end through the CLI: train on two real sessions, score
the third, which the models never saw (a small slice of donkey_rc_sessions)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import Cache, read_drives
from steertime.data.readers.donkey import tub_view
from tests.conftest import tree_digest

runner = CliRunner()
HELD_OUT = "23-01-12_2"


def _ok(args: list[str]) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r.output


def test_train_on_two_sessions_score_the_third(shared_data, tmp_path):
    src = shared_data / "donkey_rc_sessions"
    # a slice: 120 consecutive records from each session, the rest hidden (source untouched)
    keep = set(range(300, 420)) | set(range(7000, 7120)) | set(range(10000, 10120))
    before = tree_digest(src)
    view = tub_view(src, tmp_path / "tub", set(range(13338)) - keep)
    out = _ok(
        [
            "prepare",
            str(view),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "66x88",
            "--split",
            "session",
            "--test-session",
            HELD_OUT,
            "--guard",
            "10",
        ]
    )
    assert f"test: 120 frames (sessions: {HELD_OUT})" in out
    assert "train: 204 frames (sessions: 23-01-12_0, 23-01-12_1)" in out
    # a label lead past the guard is refused with the re-split command, sessions included
    r = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tmp_path / "c"),
            "--set",
            "data.lead=11",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code != 0
    assert f"--mode session --test-session {HELD_OUT} --guard 11" in str(r.exception)
    for model in ("pilotnet", "motion_lstm"):
        _ok(
            [
                "train",
                "--data",
                str(tmp_path / "c"),
                "--model",
                model,
                "--outputs",
                "steering,throttle",
                "--seq-len",
                "5",
                "--batch-size",
                "4",
                "--epochs",
                "1",
                "--set",
                "data.flip=true",
                "--out",
                str(tmp_path / model),
            ]
        )
    out = _ok(
        [
            "evaluate",
            str(tmp_path / "motion_lstm"),
            "--data",
            str(tmp_path / "c"),
            "--compare",
            str(tmp_path / "pilotnet"),
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["data"]["sessions"] == [HELD_OUT] and metrics["data"]["split_mode"] == "session"
    assert metrics["frames"] == 120
    preds = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    truth = [d for d in read_drives(view) if d.name.endswith(HELD_OUT)][0]
    # scored on exactly the held-out session's frames, against its own labels
    assert preds["t"].tolist() == truth.timestamps.tolist()
    assert preds["true_steering"].tolist() == truth.signals["steering"].tolist()
    assert {"motion_lstm:steering", "pilotnet:steering", "pilotnet:throttle"} <= set(preds)
    assert HELD_OUT in (tmp_path / "ev" / "report.html").read_text()
    assert Cache.open(tmp_path / "c").manifest["splits"]["config"]["test_sessions"] == [HELD_OUT]
    # the view hid records through its own manifest; the source tub is untouched
    assert tree_digest(src) == before
    meta = json.loads((view / "data" / "manifest.json").read_text().splitlines()[4])
    assert len(meta["deleted_indexes"]) == 13338 - 360
