"""Atomic outputs: write to a temporary sibling, then rename over the target.

A crash or a kill leaves either the old output or the new one, never half of one.

`tempfile` creates its files 0600 and its directories 0700 (private, as a temporary
should be); once renamed they are outputs, so they get the modes `open()`/`mkdir()` would
have given them: 0666 / 0777 less the user's umask. A lab shares reports and caches.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where the kernel tells (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it back
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside `path`; on clean exit fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _owner(p: Path) -> int | None:
    """The pid in a `.NAME.tmp-PID-XXXX` / `.NAME.old-PID` sibling's name (None: older
    steertime, which did not put it there)."""
    tail = p.name.rsplit(".", 1)[-1]  # tmp-PID-XXXX or old-PID
    parts = tail.split("-")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def siblings(path: Path, kind: str) -> list[Path]:
    """The `.NAME.<kind>-*` folders beside `path` (kind: tmp or old)."""
    return sorted(path.parent.glob(f".{glob_escape(path.name)}.{kind}-*"))


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def orphaned(p: Path, legacy_age_s: float = 3600.0) -> bool:
    """True for a temporary sibling whose writer is gone: its pid is dead (same host), or,
    for the pid-less names of older versions, it was last touched over an hour ago."""
    pid = _owner(p)
    if pid is not None:
        return not _alive(pid)
    with contextlib.suppress(OSError):
        return time.time() - p.stat().st_mtime > legacy_age_s
    return False


def clean_orphans(path: str | Path, keep_old_without_target: bool = True) -> list[Path]:
    """Remove temporary siblings of `path` left by killed writers (a killed `prepare
    --overwrite` left its `.tmp` folder forever). An `.old-` copy is removed only while
    `path` exists: without it, the old copy is the one to recover (see `recover_dir`)."""
    path = Path(path)
    removed = []
    for p in siblings(path, "tmp") + siblings(path, "old"):
        if ".old-" in p.name and keep_old_without_target and not path.exists():
            continue
        if orphaned(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def recover_dir(path: str | Path, rank: Callable[[Path], Any]) -> Path | None:
    """Put back `path` after a crash between the two renames of `atomic_dir`.

    There the target is gone, and `.NAME.old-PID` (the previous copy) and `.NAME.tmp-*`
    (the new, maybe half-written) remain. `rank(p)` returns a sortable key for a complete
    copy, None for an incomplete one; the highest complete copy is renamed to `path`.
    Only call it when no other process writes `path` (a lock is held)."""
    path = Path(path)
    if path.exists():
        return None
    best, best_key = None, None
    for p in siblings(path, "tmp") + siblings(path, "old"):
        try:
            key = rank(p)
        except Exception:  # an unreadable copy is an incomplete one
            key = None
        if key is not None and (best_key is None or key > best_key):
            best, best_key = p, key
    if best is not None:
        os.replace(best, path)
    return best


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it into place on success.

    If the body raises (or the process dies), `path` is untouched and the temporary
    directory is removed (or, after a kill, left with a `.tmp-PID-` name that is never
    read, and removed by the next writer of `path` once PID is gone).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
