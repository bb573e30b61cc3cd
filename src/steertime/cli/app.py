"""The shared Typer app, console, progress bar and data options of every command."""

from __future__ import annotations

import contextlib
import errno
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from steertime import data
from steertime.data.drive import DEFAULT_MAX_GAP_S
from steertime.data.readers.generic import load_mapping, mapping_from_pairs
from steertime.errors import SteertimeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="steertime: recurrent networks that steer a car through time.",
)
# Off a terminal (a pipe, a log) rich would cut tables at 80 columns: give them room.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


LOG_EVERY_S = 30.0  # off a terminal: one progress line this often (a bar would be a flood)


class _LogLines:
    """Progress off a terminal (a log file, CI, nohup): a plain line every LOG_EVERY_S."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.started = self.last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / max(rate, 1e-9)
            err.print(
                f"{self.label}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                f"{rate:.0f}/s, ~{left:.0f} s left",
                highlight=False,
                soft_wrap=True,
            )


@contextlib.contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr on a terminal, else a line every LOG_EVERY_S; yields
    `advance(n)`."""
    if not err.is_terminal:
        yield _LogLines(label, max(total, 1)).advance
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def read_options(
    max_gap: float,
    strict: bool,
    mapping: Path | None,
    maps: list[str],
    keep_pilot: bool = False,
    camera: str | None = None,
) -> data.ReadOptions:
    if not max_gap > 0:  # NaN too; inf is allowed: never split
        raise SteertimeError(f"--max-gap must be a number of seconds > 0, got {max_gap}")
    m = load_mapping(mapping) if mapping is not None else None
    if maps:
        m = _merge(m or {}, mapping_from_pairs(maps))
    return data.ReadOptions(
        max_gap_s=max_gap, strict=strict, mapping=m, keep_pilot=keep_pilot, camera=camera
    )


def _merge(base: dict, extra: dict) -> dict:
    out = {**base, **{k: v for k, v in extra.items() if k != "signals"}}
    out["signals"] = {**(base.get("signals") or {}), **extra.get("signals", {})}
    return out


FORMAT = typer.Option(None, "--format", "-f", help="Reader to use (default: auto-detect).")
MAX_GAP = typer.Option(
    DEFAULT_MAX_GAP_S, "--max-gap", help="A gap longer than this (s) splits a drive."
)
STRICT = typer.Option(False, "--strict", help="Treat fixable data problems as errors.")
MAPPING = typer.Option(None, "--mapping", help="Generic format: mapping YAML/TOML file.")
KEEP_PILOT = typer.Option(
    False, "--keep-pilot", help="Donkeycar: keep records the pilot drove (user/mode local*)."
)
CAMERA = typer.Option(
    None, "--camera", help="Udacity bags: center (default), left or right camera."
)
MAP = typer.Option([], "--map", help="Generic format: KEY=VALUE, e.g. steering=angle:deg.")
# one thread by default: at batch 1 a second thread only waits for a busy core
THREADS = typer.Option(
    1, "--threads", help="CPU threads for inference (default 1, best at batch 1; 0: torch's)."
)


# Faults of the machine, not of steertime: one line and exit status 2, not a traceback.
# Every output is written atomically, so what was there before (the previous checkpoint, the
# old cache) is still intact; the message says so.
_OS_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def os_fault_line(e: OSError) -> str | None:
    """The one-line message for a full disk or a read-only/forbidden output, else None."""
    what = _OS_FAULTS.get(e.errno or 0)
    if what is None:
        return None
    where = e.filename or ""
    return (
        f"{where}: {what}" if where else what
    ) + "; nothing was half-written (earlier outputs and checkpoints are intact)"


def main() -> None:
    """Entry point: user-facing errors become one clear line and exit status 2."""
    try:
        app()
    except (SteertimeError, FileExistsError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:
        line = os_fault_line(e)
        if line is None:
            raise
        err.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
        sys.exit(2)
