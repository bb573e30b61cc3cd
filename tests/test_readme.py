"""The README's commands are what CI runs and what the CLI offers."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from steertime.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1]
    return re.findall(r"```bash\n(.+?)\n```", block)[:2]


def test_ci_runs_the_readme_test_command():
    _, test_cmd = _commands()
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_readme_cli_commands_exist():
    text = (ROOT / "README.md").read_text()
    code = " ".join(re.findall(r"```.*?```", text, re.S) + re.findall(r"`[^`\n]+`", text))
    used = set(re.findall(r"steertime ([a-z]+)", code))
    assert {"demo", "inspect", "prepare"} <= used
    for cmd in used:
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert r.exit_code == 0, f"README uses `steertime {cmd}` but the CLI has no such command"
