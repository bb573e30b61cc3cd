"""Data-path benchmarks (issue: data readers + prepared cache).

    python benchmarks/bench_data.py [--frames 100000] [--repeats 3]

1. `prepare` throughput on ../shared/data/udacity_sim_track1 (320x160 JPG -> 66x200).
2. Random-access reads of 10-frame sequences from that cache (warm page cache).
3. Peak RSS of preparing and of iterating a generated cache of --frames frames, each
   measured in a fresh subprocess (ru_maxrss), so the numbers are the process's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def bench_prepare(tmp: Path, repeats: int) -> tuple[float, Path]:
    from steertime.data import read_drives
    from steertime.data.cache import prepare_drives

    rates = []
    for r in range(repeats):
        drives = read_drives(SHARED / "udacity_sim_track1")
        n = sum(len(d) for d in drives)
        t0 = time.perf_counter()
        prepare_drives(drives, tmp / f"udacity{r}", source=str(SHARED / "udacity_sim_track1"))
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), tmp / "udacity0"


def bench_random_reads(cache_dir: Path, seq_len: int = 10, n_reads: int = 20000) -> float:
    from steertime.data import Cache

    cache = Cache.open(cache_dir)
    rng = np.random.default_rng(0)
    d = cache.drives[0]
    buf = np.empty((seq_len, d.height, d.width, 3), np.uint8)
    starts = rng.integers(0, d.n - seq_len, n_reads)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for s in starts:
            d.read_frames(int(s), int(s) + seq_len, out=buf)
        rates.append(n_reads * seq_len / (time.perf_counter() - t0))
    return statistics.median(rates)


def _child_prepare(out: str, frames: int) -> None:
    from steertime.data.cache import prepare_drives
    from steertime.data.drive import assemble_drives
    from steertime.data.frames import ArrayFrames
    from steertime.data.units import Unit

    base = np.random.default_rng(0).integers(0, 255, (66, 200, 3), dtype=np.uint8)

    def make(i: int) -> np.ndarray:
        return np.roll(base, i % 200, axis=1)

    drives = assemble_drives(
        name="gen",
        source="generated",
        format="generated",
        timestamps=np.arange(frames) / 20.0,
        signals={"steering": np.sin(np.arange(frames) / 50.0)},
        units={"steering": Unit("rad", 1.0)},
        frames=ArrayFrames(frames, make),
    )
    prepare_drives(drives, out)


def _child_iterate(out: str) -> None:
    from steertime.data import Cache

    cache = Cache.open(out)
    total = 0
    for d in cache.drives:
        buf = np.empty((64, d.height, d.width, 3), np.uint8)
        for s in range(0, d.n - 64, 64):
            total += int(d.read_frames(s, s + 64, out=buf)[:, 0, 0, 0].sum())
    del total


def _peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Run a child benchmark; it reports its own peak RSS (ru_maxrss) on stdout."""
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    return float(p.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=["prepare", "iterate"])
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.child:
        _child_prepare(a.out, a.frames) if a.child == "prepare" else _child_iterate(a.out)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return

    with tempfile.TemporaryDirectory(dir=ROOT.parent) as t:
        tmp = Path(t)
        prep, cache_dir = bench_prepare(tmp, a.repeats)
        reads = bench_random_reads(cache_dir)
        rss_prep, wall_prep = _peak_rss_mb(
            ["--child", "prepare", "--out", str(tmp / "big"), "--frames", str(a.frames)]
        )
        rss_iter, wall_iter = _peak_rss_mb(["--child", "iterate", "--out", str(tmp / "big")])
        result = {
            "prepare_udacity_fps_median": round(prep),
            "random_read_seq10_fps_median": round(reads),
            "generated_frames": a.frames,
            "prepare_generated_peak_rss_mb": round(rss_prep),
            "prepare_generated_wall_s": round(wall_prep, 1),
            "iterate_generated_peak_rss_mb": round(rss_iter),
            "iterate_generated_wall_s": round(wall_iter, 1),
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
