"""The CLI is a thin layer: check it wires options through and reports errors cleanly."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from steertime.cli import app
from steertime.data import Cache

runner = CliRunner()


def test_simulate_inspect_prepare(tmp_path):
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path / "syn"), "--minutes", "0.15"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "syn")])
    assert r.exit_code == 0, r.output
    assert "format generic" in r.output and "90 frames" in r.output and "no problems" in r.output
    assert "torque" in r.output and "N*m" in r.output
    r = runner.invoke(
        app,
        [
            "prepare",
            str(tmp_path / "syn"),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "33x100",
            "--crop",
            "10,0",
            "--guard",
            "5",
        ],
    )
    assert r.exit_code == 0, r.output
    c = Cache.open(tmp_path / "c")
    assert c.frame.height == 33 and c.frame.crop_top == 10
    assert c.manifest["splits"]["config"]["guard"] == 5
    r = runner.invoke(app, ["split", str(tmp_path / "c"), "--mode", "blocks", "--guard", "2"])
    assert r.exit_code == 0 and "train:" in r.output


def test_errors_are_one_line_not_tracebacks(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "from steertime.cli import main; main()",
            "inspect",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert "path does not exist" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "from steertime.cli import main; main()",
            "prepare",
            str(tmp_path),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "big",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "HEIGHTxWIDTH" in p.stderr


def test_inspect_real_deeptesla_reports_label_overrun(shared_data):
    r = runner.invoke(app, ["inspect", str(shared_data / "deeptesla"), "--decode"])
    assert r.exit_code == 0, r.output
    assert "745 label rows" in r.output and "MISSING" in r.output


def test_inspect_shows_each_drive_and_its_mean_steering(shared_data):
    """Sessions driven round the track in opposite directions show opposite mean steering:
    the hint to train with data.flip (docs/rc_sessions.md)."""
    r = runner.invoke(app, ["inspect", str(shared_data / "donkey_rc_sessions")])
    assert r.exit_code == 0, r.output
    flat = r.output.replace("│", "").replace("\n", "").replace(" ", "")
    assert "mean steering" in r.output and "+0.376" in r.output and "-0.277" in r.output
    assert "23-01-12_2" in flat  # the session ID is never cut off
