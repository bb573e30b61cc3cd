"""A run folder's safety: one training at a time, checkpoints put back after a crash, and
a resume that refuses a changed config or changed data.

- `run_lock(run)`: an exclusive `flock` on `RUN/.lock` for the whole training; a second
  training into the same folder fails at once (two used to interleave `metrics.csv`).
- `recover_checkpoints(run)`: a crash between the two renames of a checkpoint folder
  leaves no `last` but complete `.last.old-*`/`.last.tmp-*` copies; the newest complete
  one is renamed back before resuming.
- `resume_changes(stored, wanted)`: what a resume would change; only `SAFE_ON_RESUME`
  keys may change (they alter how long or where the run goes on, not what it learns).
- `append_metrics(run, row)`: `metrics.csv`, rewritten atomically each epoch.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steertime.atomic import clean_orphans, recover_dir, write_text
from steertime.errors import SteertimeError
from steertime.models.checkpoint import read_meta, read_tensors

# Keys a resumed run may change: how long it goes on, how it runs, how often it saves.
# Everything else (model, data, optimiser, chunking, seed) would silently mix two runs.
SAFE_ON_RESUME = (
    "train.epochs",
    "train.max_steps",
    "train.patience",
    "train.threads",
    "train.device",
    "train.precision",
    "train.checkpoint_every",
    "train.diagnostics",
    "train.track",  # scored and logged, never read back (train/track.py)
    "train.track_split",
    "data.cache",  # the path may move; the content hash is compared on resume
)


@contextlib.contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run` (created if needed) while the body runs. A folder
    it created is removed again when the body fails before writing anything into it."""
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    f = open(run / ".lock", "a+")  # noqa: SIM115 - held for the whole body
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "another process"
            raise SteertimeError(
                f"{run}: another training is writing this run folder ({who}); wait for it "
                "to end, or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        yield
    except BaseException:
        if created and [p.name for p in run.iterdir()] == [".lock"]:
            shutil.rmtree(run, ignore_errors=True)  # a refused start leaves nothing behind
        raise
    finally:
        f.close()  # releases the lock


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and prefix == "":
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def resume_changes(stored: dict, wanted: dict) -> tuple[list[str], list[str]]:
    """(unsafe, safe) changes from the stored config to the wanted one, as `key: a -> b`."""
    a, b = _flatten(stored), _flatten(wanted)
    unsafe, safe = [], []
    for key in sorted(set(a) | set(b)):
        if key == "out" or a.get(key) == b.get(key):
            continue
        line = f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
        (safe if key in SAFE_ON_RESUME else unsafe).append(line)
    return unsafe, safe


def check_resume(run: Path, stored: dict, wanted: dict) -> list[str]:
    """Refuse a resume that changes anything but `SAFE_ON_RESUME`; returns the safe changes."""
    unsafe, safe = resume_changes(stored, wanted)
    if unsafe:
        raise SteertimeError(
            f"{run}: --resume would change the run's config ({'; '.join(unsafe)}); only "
            f"{', '.join(SAFE_ON_RESUME)} may change on resume. Start a new --out "
            "(or train.init_from=RUN to start from its weights)"
        )
    return safe


def check_data_hash(run: Path, stored_hash: str | None, cache_path: str, now: str) -> None:
    """Refuse to resume on a cache whose content differs from the one the run began on."""
    if stored_hash and stored_hash != now:
        raise SteertimeError(
            f"{run}: the cache {cache_path} now holds other data (content hash {stored_hash} "
            f"when the run began, {now} now: re-prepared?); resuming would mix two data "
            "sets. Start a new --out"
        )


def _rank_checkpoint(p: Path) -> tuple[int, int] | None:
    """A complete checkpoint copy's (global step, 1 for a new copy): meta.json is written
    last, and every safetensors file must open."""
    meta = read_meta(p)
    for f in ("model.safetensors", "train_state.safetensors"):
        if (p / f).exists() or f == "model.safetensors":
            read_tensors(p / f)
    step = int(meta.get("position", {}).get("global_step", meta.get("epoch", 0)) or 0)
    return step, int(".tmp-" in p.name)


def recover_checkpoints(run: Path) -> list[str]:
    """Put back `last`/`best` lost between two renames; clear orphaned copies. Needs the lock."""
    notes = []
    for name in ("last", "best"):
        target = run / "checkpoints" / name
        got = recover_dir(target, _rank_checkpoint)
        if got is not None:
            notes.append(f"recovered {target} from {got.name} (a crash had left it mid-rename)")
        clean_orphans(target)
    return notes


def started(run: Path) -> bool:
    """A run that wrote anything into checkpoints/ (a config.yaml alone is a failed start)."""
    ck = run / "checkpoints"
    return ck.is_dir() and any(ck.iterdir())


def append_metrics(run: Path, row: dict, keep_epochs_below: int | None = None) -> None:
    """Rewrite metrics.csv atomically (rows of epochs >= keep_epochs_below are dropped)."""
    f = run / "metrics.csv"
    rows = list(csv.DictReader(f.open())) if f.is_file() else []
    if keep_epochs_below is not None:
        rows = [r for r in rows if int(r["epoch"]) < keep_epochs_below]
    if row:
        rows.append(row)
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(rows)
    write_text(f, buf.getvalue())
