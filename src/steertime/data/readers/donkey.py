"""Donkeycar tub v2: `manifest.json` + `catalog_N.catalog` (JSON lines) + `images/`.

Honours `deleted_indexes`; each `_session_id` is a separate recording (and gaps inside a
session split it further). Records that the pilot drove (`user/mode` `local` or
`local_angle`) carry no human label for what the pilot controlled and are skipped unless
`ReadOptions.keep_pilot` is set. As Donkeycar does, only the catalogs the manifest lists
are read (stale ones in the folder are counted in a note); a session none of whose
images is present is skipped with a note, not the whole tub.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from steertime.atomic import write_text
from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import ImageFiles, keep_present, skip_imageless_groups
from steertime.data.readers import GroupCount, ReadOptions, Recording, register_reader
from steertime.data.units import FRACTION, Unit
from steertime.errors import DataError

# Donkeycar's angle is the normalised servo command in [-1, 1]; its scale in radians
# depends on the car's calibration, so it is left unknown.
ANGLE = Unit("normalized")
IMAGE_KEY, ANGLE_KEY, THROTTLE_KEY = "cam/image_array", "user/angle", "user/throttle"
MODE_KEY, PILOT_MODES = "user/mode", ("local", "local_angle")


def _tub(path: Path) -> Path:
    """The tub folder, from any of its path forms: the tub, its manifest.json, or the
    folder that holds it as data/ (Donkeycar's own layout, mycar/data)."""
    if path.name == "manifest.json" and path.is_file():
        return path.parent
    if (path / "manifest.json").is_file():
        return path
    return path / "data"


def mismatch(path: Path) -> str | None:
    """None for a tub in any of its path forms (see `_tub`); else why not."""
    if path.is_file() and path.name != "manifest.json":
        return "not a tub folder or its manifest.json"
    mf = _tub(path) / "manifest.json"
    if not mf.is_file():
        return "no manifest.json here or in data/"
    with open(mf, errors="replace") as fh:
        first = fh.readline()
    try:
        inputs = json.loads(first)
    except json.JSONDecodeError:
        inputs = None
    if not isinstance(inputs, list):
        # A steertime cache's manifest.json, say: one JSON object, not Donkeycar's lines.
        where = mf.name if mf.parent == path else f"{mf.parent.name}/{mf.name}"
        return f"{where} is not a tub manifest (its first line is not the list of inputs)"
    return None


def _manifest(tub: Path) -> tuple[list[dict], dict]:
    f = tub / "manifest.json"
    lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
    if len(lines) < 5:
        raise DataError(f"expected 5 JSON lines, found {len(lines)}", f)
    try:
        parsed = [json.loads(ln) for ln in lines[:5]]
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e})", f, row=e.lineno) from None
    catalog_meta = parsed[4]
    if not isinstance(catalog_meta, dict):
        raise DataError("the catalog line is not a JSON object", f, row=5)
    if "paths" not in catalog_meta:
        raise DataError("the catalog line has no 'paths'", f, row=5)
    return parsed, catalog_meta


def _catalogs(tub: Path, catalog_meta: dict) -> tuple[list[Path], list[Path]]:
    """The catalogs Donkeycar reads (the manifest's `paths`, in order), and the other
    `*.catalog` files in the folder: stale ones from earlier recordings, which Donkeycar
    ignores, so reading them would mix in records the car's own tools never show."""
    paths = catalog_meta["paths"]
    if not isinstance(paths, list):
        raise DataError("'paths' is not a list of catalog names", tub / "manifest.json", row=5)
    listed = []
    for name in paths:
        cat = tub / str(name)
        # A lexical check: the manifest may not name a path outside the tub, while a tub
        # may hold symlinked catalogs (a `tub_view`).
        if not Path(os.path.normpath(cat)).is_relative_to(os.path.normpath(tub)):
            raise DataError("catalog path escapes the tub folder; refused", tub / "manifest.json")
        if not cat.is_file():
            raise DataError("catalog listed in manifest.json is missing", cat)
        listed.append(cat)
    known = {os.path.normpath(c) for c in listed}
    unread = [p for p in tub.glob("*.catalog") if os.path.normpath(p) not in known]
    return listed, sorted(unread, key=_natural)


def _natural(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


def _unread_note(unread: list[Path]) -> str:
    n = 0
    for cat in unread:
        with open(cat, "rb") as fh:
            n += sum(1 for line in fh if line.strip())
    names = ", ".join(p.name for p in unread[:5]) + (" …" if len(unread) > 5 else "")
    k = len(unread)
    return (
        f"{k} catalog{'s' * (k > 1)} in the folder {'were' if k > 1 else 'was'} not read "
        f"({names}; {n} records): manifest.json's paths do not list "
        f"{'them' if k > 1 else 'it'}, and Donkeycar reads only those"
    )


def _deleted(catalog_meta: dict, mf: Path) -> set[int]:
    deleted = catalog_meta.get("deleted_indexes", [])
    if not isinstance(deleted, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in deleted
    ):
        raise DataError("is not a list of record indexes", mf, row=5, field="deleted_indexes")
    return set(deleted)


def _records(
    catalogs: list[Path], notes: list[str] | None = None
) -> Iterator[tuple[Path, int, dict]]:
    """Each catalog's records. The last line of the last catalog may be cut short by a
    crash while recording: it is skipped and reported in `notes`, the tub is kept."""
    for k, cat in enumerate(catalogs):
        try:
            lines = cat.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text (byte {e.start})", cat) from None
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        for i, line in enumerate(lines):
            ln = i + 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if notes is not None and k == len(catalogs) - 1 and i == last:
                    notes.append(
                        f"{cat.name} row {ln}: the last record is cut short (a crash while "
                        "recording?); skipped"
                    )
                    continue
                raise DataError(f"invalid JSON record ({e.msg})", cat, row=ln) from None
            if not isinstance(rec, dict):
                raise DataError(
                    f"a record must be a JSON object, found {type(rec).__name__}", cat, row=ln
                )
            yield cat, ln, rec


def _image_names(images: Path) -> set[str]:
    # One listing of images/ rather than a stat per record: real tubs hold tens of
    # thousands of records.
    try:
        with os.scandir(images) as it:
            return {e.name for e in it if e.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _image(images: Path, name: str, on_disk: set[str]) -> tuple[Path, bool] | None:
    """The image file a record names and whether it is present; None if it escapes."""
    plain = name not in ("", ".", "..") and os.sep not in name
    if plain and (os.altsep is None or os.altsep not in name):
        return images / name, name in on_disk
    img = (images / name).resolve()
    if not img.is_relative_to(images):
        return None
    return img, img.is_file()


def tub_view(src: str | Path, out: str | Path, hide: set[int]) -> Path:
    """A tub at `out` that shows `src`'s records except the `_index`es in `hide`.

    Donkeycar's own way: the manifest marks them deleted. Catalogs and images are
    symlinks, so the source tub is never modified and Donkeycar reads the view as well.
    """
    tub, out = _tub(Path(src)), Path(out)
    lines = (tub / "manifest.json").read_text().splitlines()
    _, meta = _manifest(tub)
    meta = {**meta, "deleted_indexes": sorted(set(meta.get("deleted_indexes", [])) | hide)}
    lines[4] = json.dumps(meta)
    data = out / "data"
    data.mkdir(parents=True)
    for p in tub.iterdir():
        if p.name != "manifest.json":
            os.symlink(p.resolve(), data / p.name)
    write_text(data / "manifest.json", "\n".join(lines) + "\n")
    return out


@register_reader("donkey", "Donkeycar tub v2 (manifest.json + catalogs + images/)", mismatch)
def read(path: Path, opts: ReadOptions) -> Recording:
    tub = _tub(path)
    _, catalog_meta = _manifest(tub)
    deleted = _deleted(catalog_meta, tub / "manifest.json")
    catalogs, unread = _catalogs(tub, catalog_meta)
    images = (tub / "images").resolve()
    on_disk = _image_names(images)
    kept: list[tuple[Path, int, dict, Path, bool, str]] = []
    counts: dict[str, list[int]] = {}  # session -> [records, with images]
    n_deleted = 0
    n_pilot: dict[str, int] = {}
    cut: list[str] = []
    for cat, ln, rec in _records(catalogs, cut):
        for key in ("_index", "_timestamp_ms", IMAGE_KEY, ANGLE_KEY):
            if key not in rec:
                raise DataError("record lacks a required key", cat, row=ln, field=key)
        if rec["_index"] in deleted:
            n_deleted += 1
            continue
        found = _image(images, str(rec[IMAGE_KEY]), on_disk)
        if found is None:
            raise DataError(
                f"image path {rec[IMAGE_KEY]!r} escapes the tub's images/ folder; refused",
                cat,
                row=ln,
                field=IMAGE_KEY,
            )
        sid = str(rec.get("_session_id", "session"))
        c = counts.setdefault(sid, [0, 0])
        c[0] += 1
        c[1] += found[1]
        mode = rec.get(MODE_KEY)
        if mode in PILOT_MODES and not opts.keep_pilot:
            n_pilot[mode] = n_pilot.get(mode, 0) + 1
            continue
        kept.append((cat, ln, rec, *found, sid))
    if kept and not on_disk and not images.is_dir():
        raise DataError("the tub has no images/ folder", images)

    notes = cut + _tub_notes(n_deleted, n_pilot, unread)
    skipped: list[str] = []
    whole = skip_imageless_groups(
        [r[4] for r in kept],
        [r[5] for r in kept],
        [f"{r[0].name}:{r[1]}" for r in kept],
        tub,
        opts.strict,
        skipped,
    )
    notes += skipped
    sessions: dict[str, list] = {}
    for r, ok in zip(kept, whole, strict=True):
        if ok:
            sessions.setdefault(r[5], []).append(r)

    drives: list[Drive] = []
    used: dict[str, int] = {}
    for sid, recs in sessions.items():
        problems = list(notes)
        present = keep_present(
            [r[4] for r in recs],
            [f"{r[0].name}:{r[1]}" for r in recs],
            tub,
            opts.strict,
            problems,
            noun="records",
        )
        recs = [r for r, ok in zip(recs, present, strict=True) if ok]
        of_session = _session_drives(tub, sid, recs, opts, problems)
        used[sid] = sum(len(d) for d in of_session)
        drives += of_session
    groups = [GroupCount(sid, n, m, used.get(sid, 0)) for sid, (n, m) in counts.items()]
    return Recording(drives, groups, skipped)


def _tub_notes(n_deleted: int, n_pilot: dict[str, int], unread: list[Path]) -> list[str]:
    # Notes on the whole tub go into every drive's problems, and so into the cache.
    notes = [f"{n_deleted} records marked deleted in the manifest were skipped"] * bool(n_deleted)
    if n_pilot:
        counts = ", ".join(f"{n} {m}" for m, n in sorted(n_pilot.items()))
        notes.append(
            f"{sum(n_pilot.values())} records driven by the pilot ({MODE_KEY}: {counts}) "
            "were skipped: they carry no human label (keep them with --keep-pilot)"
        )
    if unread:
        notes.append(_unread_note(unread))
    return notes


def _session_drives(
    tub: Path, sid: str, recs: list, opts: ReadOptions, problems: list[str]
) -> list[Drive]:
    def col(key: str) -> np.ndarray:
        vals = []
        for cat, ln, rec, *_ in recs:
            try:
                vals.append(float(rec.get(key, np.nan)))
            except (TypeError, ValueError):
                raise DataError(f"not a number: {rec[key]!r}", cat, row=ln, field=key) from None
        return np.asarray(vals)

    signals = {"steering": col(ANGLE_KEY)}
    units = {"steering": ANGLE}
    if all(THROTTLE_KEY in r[2] for r in recs):
        signals["throttle"], units["throttle"] = col(THROTTLE_KEY), FRACTION
    return assemble_drives(
        name=f"{tub.parent.name if tub.name == 'data' else tub.name}:{sid}",
        source=tub,
        format="donkey",
        timestamps=col("_timestamp_ms") / 1000.0,
        signals=signals,
        units=units,
        frames=ImageFiles([r[3] for r in recs]),
        rows=np.asarray([r[2]["_index"] for r in recs]),
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )
