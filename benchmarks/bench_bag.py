"""`prepare` throughput from a Udacity Challenge 2-shaped ROS bag (issue 20).

    python benchmarks/bench_bag.py [--frames 1200] [--repeats 3] [--compress none,bz2]

Writes a bag shaped like HMB_*: three cameras (center, left, right) of 640x480 JPEG at
20 Hz — the pictures are udacity_sim_track1 frames scaled up to the Udacity camera's size —
and a 50 Hz steering report whose type is defined only in the bag; and the same center
frames as a folder of JPEG files read by the generic reader, the image readers' path.
Then `prepare` to 66x200 with --crop 60,20 of each source, interleaved, `--repeats`
times; medians. Throughput is frames / (decode + crop/resize + write), as the CLI
reports it; the read (the bag's index and stamp scan) is timed apart. The ratio to the
image folder, from the same run, is the figure that survives a loaded machine.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def camera_jpegs(n_distinct: int = 60) -> list[bytes]:
    imgs = sorted((SHARED / "udacity_sim_track1" / "IMG").glob("center_*.jpg"))[:n_distinct]
    out = []
    for p in imgs:
        with Image.open(p) as im:
            big = im.convert("RGB").resize((640, 480), Image.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_bag(path: Path, n: int, compress: str, jpegs: list[bytes]) -> None:
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    from tests.hmb_bags import REPORT_TYPE, STEERING_REPORT, T0_NS, steering_report

    store = get_typestore(Stores.ROS1_NOETIC)
    store.register(get_types_from_msg(STEERING_REPORT, REPORT_TYPE))
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Img = store.types["sensor_msgs/msg/CompressedImage"]
    w = Writer(path)
    if compress == "bz2":
        w.set_compression(Writer.CompressionFormat.BZ2)
    cams = ("center", "left", "right")
    with w:
        conn = {
            c: w.add_connection(
                f"/{c}_camera/image_color/compressed", Img.__msgtype__, typestore=store
            )
            for c in cams
        }
        steer = w.add_connection("/vehicle/steering_report", REPORT_TYPE, typestore=store)
        events = []
        for k in range(n):
            for j, c in enumerate(cams):
                events.append((T0_NS + k * 50_000_000 + j * 1_000_000, c, k))
        for k in range(n * 5 // 2 + 5):
            events.append((T0_NS - 50_000_000 + k * 20_000_000, "steer", k))
        events.sort()
        for ns, what, k in events:
            stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
            if what == "steer":
                msg = steering_report(
                    store, ns, k, float(np.sin(k / 50)), 12.0, steering_wheel_torque=0.1
                )
                w.write(steer, ns, store.serialize_ros1(msg, REPORT_TYPE))
            else:
                data = np.frombuffer(jpegs[k % len(jpegs)], np.uint8)
                msg = Img(
                    header=Header(seq=k, stamp=stamp, frame_id=what), format="jpeg", data=data
                )
                w.write(conn[what], ns, store.serialize_ros1(msg, Img.__msgtype__))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_images(folder: Path, n: int, jpegs: list[bytes]) -> None:
    """The same center frames as a folder of JPEG files + CSV (the generic reader): what
    an image reader does with the same pictures."""
    import pandas as pd
    from tests.hmb_bags import T0_NS

    (folder / "center").mkdir(parents=True)
    names = []
    for k in range(n):
        names.append(f"{T0_NS + k * 50_000_000}.jpg")
        (folder / "center" / names[-1]).write_bytes(jpegs[k % len(jpegs)])
    t = T0_NS + 50_000_000 * np.arange(n)
    pd.DataFrame({"t": t, "file": names, "angle": np.sin(np.arange(n) / 20)}).to_csv(
        folder / "log.csv", index=False
    )
    (folder / "steertime.yaml").write_text(
        "csv: log.csv\nframes: center\ntime: {column: t, unit: ns}\nframe: {column: file}\n"
        "signals:\n  steering: {column: angle, unit: rad, angle_of: steering_wheel}\n"
    )


def _prepare(src: Path, out: Path) -> tuple[float, float, float, int]:
    """(read s, prepare frames/s, prepare CPU ms/frame, frames) of one `prepare`."""
    from steertime.data import FrameSpec, PrepareConfig, read_drives
    from steertime.data.cache import prepare_drives

    t0 = time.perf_counter()
    drives = read_drives(src)
    t1 = time.perf_counter()
    c1 = _cpu()
    cfg = PrepareConfig(frame=FrameSpec(66, 200, 60, 20))
    prepare_drives(drives, out, cfg, source=str(src))
    n = sum(len(d) for d in drives)
    return t1 - t0, n / (time.perf_counter() - t1), (_cpu() - c1) * 1000 / n, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compress", default="none,bz2")
    args = ap.parse_args()

    jpegs = camera_jpegs()
    print(f"camera JPEG: 640x480, mean {np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"images (generic reader)": tmp / "images"}
        write_images(sources["images (generic reader)"], args.frames, jpegs)
        for compress in args.compress.split(","):
            bag = tmp / compress / "HMB_bench.bag"
            bag.parent.mkdir()
            write_bag(bag, args.frames, compress, jpegs)
            sources[f"bag, {compress}, {bag.stat().st_size / 2**20:.0f} MiB"] = bag
        got: dict[str, list] = {k: [] for k in sources}
        for r in range(args.repeats):  # interleaved: each repeat sees the same load
            for j, (name, src) in enumerate(sources.items()):
                got[name].append(_prepare(src, tmp / "out" / f"{j}_{r}"))
        base = statistics.median(g[1] for g in got["images (generic reader)"])
        for name, runs in got.items():
            reads, rates, cpu = zip(*((a, b, c) for a, b, c, _ in runs), strict=True)
            rate = statistics.median(rates)
            print(
                f"{name}: {runs[0][3]} frames; read {statistics.median(reads):.2f} s; "
                f"prepare {rate:.0f} frames/s ({min(rates):.0f}-{max(rates):.0f}), "
                f"{rate / base:.2f}x the image folder; CPU {statistics.median(cpu):.2f} "
                "ms/frame (all threads)"
            )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
