"""Does the real `lerobot` library load what `steertime export-dataset` writes? (issue 20)

Run it in a venv that has `lerobot` (not steertime's venv: steertime never depends on it),
with steertime's sources on the path:

    steertime export-dataset /work/shared/data/donkey_rc_tub --format lerobot /tmp/lr_out
    PYTHONPATH=src /tmp/lrvenv/bin/python benchmarks/lerobot_load_check.py /tmp/lr_out

It opens OUT with `LeRobotDataset(repo_id, root=OUT)` offline (HF_HUB_OFFLINE=1: no hub),
reads `--items` items spread over the dataset (the first and last of every episode among
them), and compares each with steertime's own `lerobot` reader of the same folder: the
camera frame (LeRobot: float 0..1 CHW, decoded by its default backend; steertime: uint8
HWC, decoded by PyAV), `action` and `observation.state` (exact: both read the same
float32 Parquet), `timestamp` (= frame_index / fps) and `source_timestamp`. Then it asks
for a window across an episode's start (`delta_timestamps`), which needs the episodes
table's index ranges and video spans to be right. Prints a report; exit code 1 if any
check fails. Not imported by the tests (it needs `lerobot`).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never fetch from the hub

import numpy as np

PIXEL_MEAN_TOL = 1.0  # mean |difference| of one frame, in 0..255 levels
PIXEL_MAX_TOL = 8  # largest single-pixel difference: two FFmpeg RGB conversions may round apart


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _pick(ds, n_items: int) -> list[int]:
    """Global indices: every episode's first and last frame, and an even spread."""
    picks = set(np.linspace(0, len(ds) - 1, max(n_items, 2)).round().astype(int).tolist())
    for e in range(ds.meta.total_episodes):
        ep = ds.meta.episodes[e]
        picks |= {int(ep["dataset_from_index"]), int(ep["dataset_to_index"]) - 1}
    return sorted(picks)


def _steertime_frames(root: Path, wanted: dict[int, list[int]]) -> dict[int, tuple]:
    """{video frame number: (frame uint8 HWC, {signal: value}, source time)} by steertime."""
    from steertime.data.readers import ReadOptions, read_drives

    drives = read_drives(root, "lerobot", ReadOptions(max_gap_s=float("inf")))
    found: dict[int, tuple] = {}
    for d in drives:
        numbers = d.frames.frame_numbers
        idx = [i for i, n in enumerate(numbers.tolist()) if n in wanted]
        for i, frame in d.frames.subset(idx).iter_frames():
            j = idx[i]
            found[int(numbers[j])] = (
                frame,
                {k: float(v[j]) for k, v in d.signals.items()},
                float(d.timestamps[j]),
            )
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="a dataset written by steertime export-dataset")
    ap.add_argument("--repo-id", default="local/steertime_export")
    ap.add_argument("--items", type=int, default=24, help="items spread over the dataset")
    ap.add_argument("--video-backend", default=None, help="LeRobot's decoder (its default)")
    args = ap.parse_args()

    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = args.root.resolve()
    print(
        "versions: "
        + ", ".join(
            f"{p} {_version(p)}"
            for p in ("lerobot", "torch", "torchcodec", "torchvision", "av", "datasets")
        )
    )
    try:
        ds = LeRobotDataset(args.repo_id, root=root, video_backend=args.video_backend)
        ds[0]
    except Exception as e:  # what a user of lerobot would hit: report it, one line
        cause = e.__cause__ or e
        print(f"FAIL: lerobot cannot load {root}: {type(e).__name__}: {e} (cause: {cause})")
        return 1
    cam = ds.meta.camera_keys[0]
    fps = ds.fps
    print(
        f"loaded {root}: codebase {ds.meta.info['codebase_version']}, {ds.num_episodes} "
        f"episodes, {len(ds)} frames at {fps} fps, camera {cam}, backend {ds.video_backend}"
    )
    feats = ds.meta.features
    names = {k: feats[k]["names"] for k in ("action", "observation.state") if k in feats}
    picks = _pick(ds, args.items)
    items = {}
    for g in picks:
        it = ds[g]
        ep = ds.meta.episodes[int(it["episode_index"])]
        start = round(float(ep[f"videos/{cam}/from_timestamp"]) * fps)
        items[start + int(it["frame_index"])] = it
    ours = _steertime_frames(root, items)

    failures = []
    px_mean, px_max, sig_err, t_err, src_err = [], [], 0.0, 0.0, 0.0
    for number, it in items.items():
        if number not in ours:
            failures.append(f"video frame {number}: steertime's reader has no such frame")
            continue
        frame, signals, t_src = ours[number]
        lr = it[cam].numpy()  # float32 CHW, 0..1
        if lr.shape != (frame.shape[2], frame.shape[0], frame.shape[1]):
            failures.append(f"video frame {number}: shape {lr.shape} vs {frame.shape}")
            continue
        diff = np.abs(lr.transpose(1, 2, 0) * 255.0 - frame.astype(np.float32))
        px_mean.append(float(diff.mean()))
        px_max.append(float(diff.max()))
        for key, cols in names.items():
            v = it[key].numpy().reshape(-1)  # shape [1] comes back a scalar
            for j, n in enumerate(cols):
                sig_err = max(sig_err, abs(float(v[j]) - signals[n]))
        t_err = max(t_err, abs(float(it["timestamp"]) - int(it["frame_index"]) / fps))
        if "source_timestamp" in it:
            # LeRobot hands float64 columns back as float32: rel. precision ~6e-8
            src_err = max(src_err, abs(float(it["source_timestamp"]) - t_src) / max(abs(t_src), 1))
    if px_mean and (max(px_mean) > PIXEL_MEAN_TOL or max(px_max) > PIXEL_MAX_TOL):
        failures.append(f"frames differ: mean {max(px_mean):.3f}, max {max(px_max):.0f} levels")
    if sig_err > 0:
        failures.append(f"action/state differ by up to {sig_err:g}")
    if t_err > 1e-4:
        failures.append(f"timestamp differs from frame_index / fps by {t_err:g} s")
    if src_err > 1e-6:
        failures.append(f"source_timestamp differs by {src_err:g} (relative)")
    print(
        f"{len(items)} items compared with steertime's reader: frames mean |diff| "
        f"{np.mean(px_mean):.3f} (worst frame {max(px_mean):.3f}), max {max(px_max):.0f} "
        f"of 255 levels; action/state max |diff| {sig_err:g}; timestamp max |diff| "
        f"{t_err:g} s; source_timestamp rel. diff {src_err:.1e}"
    )

    # A window across an episode's first frame: padded before it, real frames after.
    window = [-2 / fps, -1 / fps, 0.0, 1 / fps]
    keys = {cam: window, **{k: window for k in names}}
    dw = LeRobotDataset(
        args.repo_id, root=root, delta_timestamps=keys, video_backend=args.video_backend
    )
    last = ds.num_episodes - 1
    first = int(ds.meta.episodes[last]["dataset_from_index"])
    w = dw[first]
    pad = w[f"{cam}_is_pad"].tolist()
    if pad != [True, True, False, False] or tuple(w[cam].shape[:2]) != (4, 3):
        failures.append(
            f"window at episode {last}'s start: is_pad {pad}, shape {tuple(w[cam].shape)}"
        )
    same = torch.allclose(w[cam][2], ds[first][cam]) and torch.allclose(
        w[cam][3], ds[first + 1][cam]
    )
    if not same:
        failures.append("window frames differ from the items at the same indices")
    print(f"window {window} s at episode {last}'s first frame: is_pad {pad}, frames match: {same}")

    for f in failures:
        print("FAIL:", f)
    print("OK: lerobot loads the dataset and agrees with steertime" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
