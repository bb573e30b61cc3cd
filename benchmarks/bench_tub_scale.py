"""Large Donkeycar tubs (issue 25): `inspect` and `prepare` on a tub of ≥ 50,000 records.

    nice -n 19 python benchmarks/bench_tub_scale.py [--records 52000] [--repeats 3]

Builds (once; reused while its parameters match) a tub v2 under /tmp from the records and
160x120 frames of ../shared/data's two tubs: --sessions sessions at 20 Hz, the first
--imageless of them without their images (as when a car's early sessions were never
copied), and --stale catalogs in the folder that manifest.json does not list. Then runs
the real CLI, each command in a fresh process, --repeats times: `steertime inspect TUB`
and `steertime prepare TUB --size 120x160` (frames kept at 160x120). Prints wall times,
prepare's frames/s and each process's peak RSS (ru_maxrss from wait4) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = ("donkey_rc_sessions", "donkey_rc_tub")
STEERTIME = Path(sys.executable).with_name("steertime")
PER_CATALOG = 1000


def _source_records() -> list[tuple[dict, Path]]:
    """Every record of the shared tubs, in order, with its image file."""
    out = []
    for name in SOURCES:
        tub = SHARED / name / "data"
        meta = json.loads((tub / "manifest.json").read_text().splitlines()[4])
        for cat in meta["paths"]:
            for line in (tub / cat).read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out.append((rec, tub / "images" / rec["cam/image_array"]))
    return out


def _write_catalog(data: Path, k: int, recs: list[dict]) -> None:
    lines = [json.dumps(r) + "\n" for r in recs]
    (data / f"catalog_{k}.catalog").write_text("".join(lines))
    (data / f"catalog_{k}.catalog_manifest").write_text(
        json.dumps(
            {
                "created_at": 0.0,
                "line_lengths": [len(x) for x in lines],
                "path": f"catalog_{k}.catalog_manifest",
                "start_index": recs[0]["_index"],
            }
        )
    )


def build_tub(root: Path, records: int, sessions: int, imageless: int, stale: int) -> dict:
    """Write the tub (never in the repository) and return what it holds."""
    params = {"records": records, "sessions": sessions, "imageless": imageless, "stale": stale}
    stamp = root / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("params") == params:
        return json.loads(stamp.read_text())
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    (data / "images").mkdir(parents=True)
    pool = _source_records()
    w = np.random.default_rng(0).uniform(0.5, 1.5, sessions)
    sizes = np.floor(records * w / w.sum()).astype(int)
    sizes[-1] += records - sizes.sum()
    ids = [f"24-05-{1 + s // 3:02d}_{s % 3}" for s in range(sessions)]
    recs, i, t0, with_images = [], 0, 1_714_500_000_000, 0
    for s, n in enumerate(sizes):
        for j in range(int(n)):
            src, img = pool[i % len(pool)]
            name = f"{i}_cam_image_array_.jpg"
            recs.append(
                {
                    "_index": i,
                    "_session_id": ids[s],
                    "_timestamp_ms": t0 + 50 * j,
                    "cam/image_array": name,
                    "user/angle": src["user/angle"],
                    "user/mode": src["user/mode"],
                    "user/throttle": src["user/throttle"],
                }
            )
            if s >= imageless:  # the early sessions' images were never copied
                shutil.copyfile(img, data / "images" / name)
                with_images += 1
            i += 1
        t0 += 50 * int(n) + 600_000  # ten minutes between sessions
    paths = []
    for k in range(0, len(recs), PER_CATALOG):
        _write_catalog(data, k // PER_CATALOG, recs[k : k + PER_CATALOG])
        paths.append(f"catalog_{k // PER_CATALOG}.catalog")
    # Stale catalogs from an earlier recording into the same folder: not in the manifest.
    for j in range(stale):
        old = [
            {**r, "_index": r["_index"] + j * PER_CATALOG, "_session_id": "24-04-30_0"}
            for r in recs[:PER_CATALOG]
        ]
        _write_catalog(data, len(paths) + j, old)
    manifest = [
        ["cam/image_array", "user/angle", "user/throttle", "user/mode"],
        ["image_array", "float", "float", "str"],
        {},
        {"created_at": 0.0, "sessions": {"all_full_ids": ids, "last_id": sessions - 1}},
        {"paths": paths, "current_index": len(recs), "max_len": PER_CATALOG, "deleted_indexes": []},
    ]
    (data / "manifest.json").write_text("\n".join(json.dumps(x) for x in manifest) + "\n")
    info = {"params": params, "with_images": with_images, "session_sizes": sizes.tolist()}
    stamp.write_text(json.dumps(info))
    return info


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, output) of one command in a fresh process."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"}
        )
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{text}")
    return wall, usage.ru_maxrss / 1024, text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/tmp/steertime_bench_tub"))
    ap.add_argument("--records", type=int, default=52_000)
    ap.add_argument("--sessions", type=int, default=11)
    ap.add_argument("--imageless", type=int, default=5)
    ap.add_argument("--stale", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if a.root.resolve().is_relative_to(ROOT):
        raise SystemExit("generate the tub outside the repository")
    t0 = time.perf_counter()
    info = build_tub(a.root / "tub", a.records, a.sessions, a.imageless, a.stale)
    built = time.perf_counter() - t0
    tub = str(a.root / "tub")

    inspect = [run([str(STEERTIME), "inspect", tub]) for _ in range(a.repeats)]
    lines = inspect[0][2].splitlines()
    prep, rates = [], []
    for _ in range(a.repeats):
        cache = str(a.root / "cache")
        cmd = [str(STEERTIME), "prepare", tub, "--out", cache, "--size", "120x160"]
        wall, rss, text = run([*cmd, "--overwrite", "--workers", str(a.workers)])
        frames = int(re.search(r"(\d+) frames of", text).group(1))
        rates.append(float(re.search(r"(\d+) frames/s", text).group(1)))
        prep.append((wall, rss, frames))
    frames = prep[0][2]
    result = {
        "records": a.records,
        "with_images": info["with_images"],
        "sessions": a.sessions,
        "imageless_sessions": a.imageless,
        "stale_catalogs": a.stale,
        "build_s": round(built, 1),
        "inspect_wall_s": [round(w, 2) for w, *_ in inspect],
        "inspect_wall_s_median": round(statistics.median(w for w, *_ in inspect), 2),
        "inspect_peak_rss_mb_max": round(max(r for _, r, _ in inspect)),
        "inspect_notes": [ln.strip() for ln in lines if "not read" in ln or "skipped" in ln],
        "prepare_frames": frames,
        "prepare_wall_s": [round(w, 1) for w, *_ in prep],
        "prepare_cli_fps": rates,
        "prepare_cli_fps_median": statistics.median(rates),
        "prepare_end_to_end_fps_median": round(frames / statistics.median(w for w, *_ in prep)),
        "prepare_peak_rss_mb_max": round(max(r for _, r, _ in prep)),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
