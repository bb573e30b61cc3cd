"""Every ```bash block of the README and docs, read as a user would run it (issue 24).

Each `steertime` line must parse: the subcommand and every flag exist. In a block that
trains, every run a line uses (`--compare`, the RUN of predict/evaluate/...) is trained by
an earlier line of the same block, and every cache it trains on is prepared earlier. The
README's own-data block also runs end to end on a tiny simulated recording.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main

from steertime.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_FIRST = {"predict", "export", "evaluate", "render", "diagnose", "drive", "duckietown drive"}


def bash_blocks(path: Path) -> list[list[str]]:
    """The logical lines (continuations joined) of each ```bash block."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)
    return [[ln for ln in b.replace("\\\n", " ").splitlines() if ln.strip()] for b in blocks]


def steertime_args(line: str) -> list[str] | None:
    """The arguments after `steertime` (bare or .venv/bin/steertime), or None."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w in ("steertime", ".venv/bin/steertime"):
            return words[i + 1 :]
    return None


def parse(args: list[str]) -> tuple[str, dict[str, list[str]], list[str]]:
    """(subcommand, {option: values}, positionals), failing on what the CLI lacks."""
    group = typer.main.get_command(app)
    assert args and args[0] in group.commands, f"no such command: steertime {args[:1]}"
    cmd = group.commands[args[0]]
    while hasattr(cmd, "commands"):  # a command group (`steertime duckietown drive`)
        assert len(args) > 1 and args[1] in cmd.commands, f"no such command: steertime {args[:2]}"
        args, cmd = [f"{args[0]} {args[1]}", *args[2:]], cmd.commands[args[1]]
    opts: dict[str, object] = {}
    for p in cmd.params:
        for o in (*p.opts, *p.secondary_opts):
            opts[o] = p
    found: dict[str, list[str]] = {}
    pos: list[str] = []
    it = iter(args[1:])
    for a in it:
        if a.startswith("-") and len(a) > 1 and not re.fullmatch(r"-[\d.]+", a):
            name, eq, val = a.partition("=")
            assert name in opts or name == "--help", f"steertime {args[0]} has no {name}"
            p = opts.get(name)
            flag = p is None or getattr(p, "is_flag", False) or getattr(p, "count", False)
            found.setdefault(name, []).append(val if eq else ("" if flag else next(it, "")))
        else:
            pos.append(a)
    return args[0], found, pos


def _cases() -> list:
    return [
        pytest.param(block, id=f"{path.name}#{k}")
        for path in DOCS
        for k, block in enumerate(bash_blocks(path))
    ]


@pytest.mark.parametrize("block", _cases())
def test_docs_block_parses_and_uses_what_it_made(block):
    lines = [a for a in map(steertime_args, block) if a]
    trains = any(a[0] == "train" for a in lines)
    prepares = any(a[0] == "prepare" for a in lines)
    runs: set[str] = set()
    caches: set[str] = set()
    for args in lines:
        cmd, opts, pos = parse(args)
        out = (opts.get("--out") or opts.get("-o") or [None])[0]
        used = list(opts.get("--compare", []))
        if cmd in RUN_FIRST and pos:
            used.append(pos[0])
        if cmd == "ensemble":
            used.extend(pos)
        if trains:
            for run in used:
                assert run in runs, (
                    f"`steertime {' '.join(args)}` uses {run}, trained nowhere above"
                )
        if cmd == "train" and prepares and "--data" in opts:
            assert opts["--data"][0] in caches, f"{opts['--data'][0]} is prepared nowhere above"
        if cmd in ("train", "ensemble") and out:
            runs.add(out)
        if cmd == "train" and out and "--seeds" in opts:  # members under OUT/members/
            sets = dict(o.partition("=")[::2] for o in opts.get("--set", []))
            first = int(sets.get("train.seed", 0))
            runs |= {f"{out}/members/seed{first + k}" for k in range(int(opts["--seeds"][0]))}
        if cmd == "prepare" and out:
            caches.add(out)


def own_data_block() -> list[str]:
    (block,) = [b for b in bash_blocks(ROOT / "README.md") if any("path/to/log" in x for x in b)]
    return block


def test_readme_own_data_block_activates_the_venv_first():
    block = own_data_block()
    first = next(i for i, x in enumerate(block) if steertime_args(x))
    assert any("source .venv/bin/activate" in x for x in block[:first])


def test_readme_own_data_block_runs_in_order(tmp_path):
    """As a user would, on a tiny simulated recording, one short epoch; the Donkeycar line
    (another recording) and `tune` (a search) are left out."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    steertime = [sys.executable, "-m", "steertime"]
    subprocess.run(
        [*steertime, "simulate", "--out", "log", "--minutes", "0.15"],
        cwd=tmp_path,
        check=True,
        env=env,
        capture_output=True,
    )
    tiny = [
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--set",
        "train.threads=1",
    ]
    small_rnn = ["--set", "model.hidden=16", "--set", "model.feat_dim=16"]
    ran = []
    for line in own_data_block():
        args = steertime_args(line)
        if not args or "~/mycar/data" in line or args[0] == "tune":
            continue
        args = [("log" if a == "path/to/log" else a) for a in args]
        if args[0] == "prepare":
            args += ["--guard", "10"]
        if args[0] == "train":
            args += tiny + (small_rnn if "cnn_lstm" in args else [])
        r = subprocess.run(
            [*steertime, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        ran.append(args[0])
    assert ran[:2] == ["inspect", "prepare"] and "evaluate" in ran and "render" in ran
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "overlay.mp4").is_file()
