"""Donkeycar tub v2: `manifest.json` + `catalog_N.catalog` (JSON lines) + `images/`.

Honours `deleted_indexes`; each `_session_id` is a separate recording (and gaps inside a
session split it further). Records that the pilot drove (`user/mode` `local` or
`local_angle`) carry no human label for what the pilot controlled and are skipped unless
`ReadOptions.keep_pilot` is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from steertime.atomic import write_text
from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import ImageFiles, keep_present
from steertime.data.readers import ReadOptions, register_reader
from steertime.data.units import FRACTION, Unit
from steertime.errors import DataError

# Donkeycar's angle is the normalised servo command in [-1, 1]; its scale in radians
# depends on the car's calibration, so it is left unknown.
ANGLE = Unit("normalized")
IMAGE_KEY, ANGLE_KEY, THROTTLE_KEY = "cam/image_array", "user/angle", "user/throttle"
MODE_KEY, PILOT_MODES = "user/mode", ("local", "local_angle")


def _tub(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    return path / "data"


def detect(path: Path) -> bool:
    return path.is_dir() and (_tub(path) / "manifest.json").is_file()


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
    if "paths" not in catalog_meta:
        raise DataError("the catalog line has no 'paths'", f, row=5)
    return parsed, catalog_meta


def _records(tub: Path, catalog_meta: dict) -> list[tuple[str, int, dict]]:
    out = []
    for name in catalog_meta["paths"]:
        cat = tub / name
        # A lexical check: the manifest may not name a path outside the tub, while a tub
        # may hold symlinked catalogs (a `tub_view`).
        if not Path(os.path.normpath(cat)).is_relative_to(os.path.normpath(tub)):
            raise DataError("catalog path escapes the tub folder; refused", tub / "manifest.json")
        if not cat.is_file():
            raise DataError("catalog listed in manifest.json is missing", cat)
        with open(cat) as fh:
            for ln, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    out.append((str(cat), ln, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON record ({e.msg})", cat, row=ln) from None
    return out


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


@register_reader("donkey", "Donkeycar tub v2 (manifest.json + catalogs + images/)", detect)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    tub = _tub(path)
    _, catalog_meta = _manifest(tub)
    deleted = set(catalog_meta.get("deleted_indexes", []))
    images = (tub / "images").resolve()
    sessions: dict[str, list] = {}
    n_deleted = 0
    n_pilot: dict[str, int] = {}
    for cat, ln, rec in _records(tub, catalog_meta):
        for key in ("_index", "_timestamp_ms", IMAGE_KEY, ANGLE_KEY):
            if key not in rec:
                raise DataError("record lacks a required key", cat, row=ln, field=key)
        if rec["_index"] in deleted:
            n_deleted += 1
            continue
        mode = rec.get(MODE_KEY)
        if mode in PILOT_MODES and not opts.keep_pilot:
            n_pilot[mode] = n_pilot.get(mode, 0) + 1
            continue
        img = (images / str(rec[IMAGE_KEY])).resolve()
        if not img.is_relative_to(images):
            raise DataError(
                f"image path {rec[IMAGE_KEY]!r} escapes the tub's images/ folder; refused",
                cat,
                row=ln,
                field=IMAGE_KEY,
            )
        sessions.setdefault(str(rec.get("_session_id", "session")), []).append((cat, ln, rec, img))

    drives: list[Drive] = []
    for sid, recs in sessions.items():
        problems = [f"{n_deleted} records marked deleted in the manifest were skipped"] * bool(
            n_deleted
        )
        if n_pilot:
            counts = ", ".join(f"{n} {m}" for m, n in sorted(n_pilot.items()))
            problems.append(
                f"{sum(n_pilot.values())} records driven by the pilot ({MODE_KEY}: {counts}) "
                "were skipped: they carry no human label (keep them with --keep-pilot)"
            )
        present = keep_present(
            [img.is_file() for *_, img in recs],
            [f"{Path(c).name}:{ln}" for c, ln, *_ in recs],
            tub,
            opts.strict,
            problems,
            noun="records",
        )
        recs = [r for r, ok in zip(recs, present, strict=True) if ok]

        def col(key: str, recs=recs) -> np.ndarray:
            vals = []
            for cat, ln, rec, _ in recs:
                try:
                    vals.append(float(rec.get(key, np.nan)))
                except (TypeError, ValueError):
                    raise DataError(f"not a number: {rec[key]!r}", cat, row=ln, field=key) from None
            return np.asarray(vals)

        signals = {"steering": col(ANGLE_KEY)}
        units = {"steering": ANGLE}
        if all(THROTTLE_KEY in r[2] for r in recs):
            signals["throttle"], units["throttle"] = col(THROTTLE_KEY), FRACTION
        drives += assemble_drives(
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
    return drives
