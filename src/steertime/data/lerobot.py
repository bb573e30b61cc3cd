"""Export drives as a LeRobot v3.0 dataset, written without the `lerobot` package.

Layout (what `LeRobotDataset` loads; one chunk, one file each for a driving log's size):

    OUT/meta/info.json                          codebase_version v3.0, fps, features, paths
    OUT/meta/stats.json                         min/max/mean/std/count per feature
    OUT/meta/tasks.parquet                      one task (index: its text; task_index)
    OUT/meta/episodes/chunk-000/file-000.parquet  one row per drive: its frames' index
                                                range and its span of each camera's video
    OUT/data/chunk-000/file-000.parquet         one row per frame
    OUT/videos/observation.images.front/chunk-000/file-000.mp4   every drive, end to end

Each drive is one episode. Driving signals are named in the features: `action` holds what
the driver commands (steering, throttle, brake, torque: those every drive has),
`observation.state` what the car measures (speed, and any other signal). LeRobot's
`timestamp` is frame_index / fps (its decoder finds frames by it); the log's own time and
row are kept in `source_timestamp` (float64 s) and `source_row`, and the signals' units
in `info.json`, so `steertime` reads the dataset back to the same frames and signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.atomic import atomic_dir, write_json
from steertime.data.drive import Drive
from steertime.data.frames import FrameError
from steertime.errors import DataError

ACTIONS = ("steering", "throttle", "brake", "torque")
CAMERA_KEY = "observation.images.front"
CODECS = ("h264", "lossless")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CRF = 18  # visually lossless H.264; `lossless` keeps every RGB value


@dataclass(frozen=True)
class ExportOptions:
    codec: str = "h264"  # h264 (yuv420p, CRF 18) or lossless (libx264rgb, qp 0)
    fps: int | None = None  # nominal rate; None: the drives' median rate, rounded
    task: str = "drive the car: steer and keep speed"


def _layout(drives: list[Drive]) -> tuple[list[str], list[str], list[str]]:
    """(action names, state names, names dropped because some drive lacks them)."""
    common = set.intersection(*(set(d.signals) for d in drives))
    every = sorted(set().union(*(set(d.signals) for d in drives)))
    action = [n for n in ACTIONS if n in common]
    state = [n for n in every if n in common and n not in ACTIONS]
    return action, state, [n for n in every if n not in common]


def _nominal_fps(drives: list[Drive], fps: int | None) -> int:
    if fps is not None:
        if fps <= 0:
            raise DataError(f"--fps must be positive, not {fps}")
        return int(fps)
    rates = [d.rate_hz for d in drives if len(d) > 1]
    return max(1, round(float(np.median(rates)))) if rates else 1


class _Video:
    """One camera's MP4: frames appended drive after drive at pts k / fps."""

    def __init__(self, path: Path, fps: int, codec: str) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w")
        self.fps, self.codec, self.stream, self.n = fps, codec, None, 0
        self.size: tuple[int, int] | None = None
        self.av = av

    def add(self, frame: np.ndarray, where: str) -> None:
        h, w = frame.shape[:2]
        if self.stream is None:
            self.size = (h, w)
            if self.codec == "lossless":
                s = self.container.add_stream("libx264rgb", rate=self.fps)
                s.pix_fmt, s.options = "rgb24", {"qp": "0"}
            else:
                s = self.container.add_stream("libx264", rate=self.fps)
                # 4:2:0 needs even sides; odd frames keep their colour at full resolution
                s.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
                s.options = {"crf": str(CRF)}
            s.width, s.height = w, h
            s.codec_context.time_base = Fraction(1, self.fps)
            self.stream = s
        elif (h, w) != self.size:
            raise DataError(f"frame of {h}x{w} in a video of {self.size[0]}x{self.size[1]}", where)
        vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts, vf.time_base = self.n, Fraction(1, self.fps)
        for p in self.stream.encode(vf):
            self.container.mux(p)
        self.n += 1

    def close(self) -> dict:
        if self.stream is not None:
            for p in self.stream.encode():
                self.container.mux(p)
        self.container.close()
        s = self.stream
        h, w = self.size or (0, 0)
        return {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": "h264",
                "video.pix_fmt": s.pix_fmt if s is not None else "yuv420p",
                "video.is_depth_map": False,
                "video.fps": self.fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(x)],
    }


def export_lerobot(
    drives: list[Drive],
    out: str | Path,
    options: ExportOptions | None = None,
    *,
    source: str = "",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write `drives` (with frames) as a LeRobot v3.0 dataset at `out`; returns info.json.

    A frame that cannot be decoded is left out with its row, and named in info.json."""
    opts = options or ExportOptions()
    if opts.codec not in CODECS:
        raise DataError(f"unknown codec {opts.codec!r}; use one of {', '.join(CODECS)}")
    drives = [d for d in drives if d.frames is not None and len(d)]
    if not drives:
        raise DataError("no drive with frames to export", source or None)
    action, state, dropped = _layout(drives)
    fps = _nominal_fps(drives, opts.fps)
    units = {n: drives[0].units[n].to_dict() for n in action + state if n in drives[0].units}
    problems = [f"{n} left out: not in every drive" for n in dropped]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        video = _Video(
            tmp / VIDEO_PATH.format(video_key=CAMERA_KEY, chunk_index=0, file_index=0),
            fps,
            opts.codec,
        )
        cols: dict[str, list] = {k: [] for k in ("ep", "fi", "t", "row")}
        sig: dict[str, list[np.ndarray]] = {n: [] for n in action + state}
        episodes = []
        pixel_sum = np.zeros(3)
        pixel_sq = np.zeros(3)
        pixel_min = np.full(3, 255.0)
        pixel_max = np.zeros(3)
        for d in drives:
            start = video.n
            kept = []
            for i, frame in d.frames.iter_frames():
                if progress:
                    progress(1)
                if isinstance(frame, FrameError):
                    problems.append(f"{d.name}: frame dropped: {frame}")
                    continue
                video.add(frame, d.frames.describe(i))
                f = frame.reshape(-1, 3).astype(np.float64) / 255.0
                pixel_sum += f.mean(0)
                pixel_sq += (f**2).mean(0)
                pixel_min = np.minimum(pixel_min, f.min(0))
                pixel_max = np.maximum(pixel_max, f.max(0))
                kept.append(i)
            if not kept:
                problems.append(f"{d.name}: no frame could be decoded; drive left out")
                continue
            idx = np.asarray(kept)
            n = len(idx)
            cols["ep"].append(np.full(n, len(episodes)))
            cols["fi"].append(np.arange(n))
            cols["t"].append(d.timestamps[idx])
            cols["row"].append(d.rows[idx].astype(np.int64))
            for name in sig:
                sig[name].append(d.signals[name][idx])
            episodes.append((d.name, start, video.n))
        camera = video.close()
        if not episodes:
            raise DataError("no frame of any drive could be decoded", source or None)
        ep = np.concatenate(cols["ep"])
        fi = np.concatenate(cols["fi"])
        total = len(ep)
        table: dict[str, object] = {}
        stats: dict[str, dict] = {}
        features: dict[str, dict] = {CAMERA_KEY: camera}
        for key, names in (("observation.state", state), ("action", action)):
            if not names:
                continue
            m = np.stack([np.concatenate(sig[n]) for n in names], 1).astype(np.float32)
            table[key] = m
            stats[key] = _stats(m)
            features[key] = {
                "dtype": "float32",
                "shape": [len(names)],
                "names": names,
                "units": [units.get(n, {}).get("name", "unknown") for n in names],
            }
        extra = {
            "timestamp": ("float32", (fi / fps).astype(np.float32)),
            "frame_index": ("int64", fi.astype(np.int64)),
            "episode_index": ("int64", ep.astype(np.int64)),
            "index": ("int64", np.arange(total, dtype=np.int64)),
            "task_index": ("int64", np.zeros(total, np.int64)),
            "source_timestamp": ("float64", np.concatenate(cols["t"])),
            "source_row": ("int64", np.concatenate(cols["row"])),
        }
        for key, (dtype, v) in extra.items():
            table[key] = v
            stats[key] = _stats(v)
            features[key] = {"dtype": dtype, "shape": [1], "names": None}
        n_px = max(total, 1)
        mean = pixel_sum / n_px
        stats[CAMERA_KEY] = {
            "min": pixel_min.reshape(3, 1, 1).tolist(),
            "max": pixel_max.reshape(3, 1, 1).tolist(),
            "mean": mean.reshape(3, 1, 1).tolist(),
            "std": np.sqrt(np.maximum(pixel_sq / n_px - mean**2, 0)).reshape(3, 1, 1).tolist(),
            "count": [total],
        }
        _write_parquet(tmp / DATA_PATH.format(chunk_index=0, file_index=0), table)
        _write_episodes(tmp, episodes, fps, opts.task)
        pd.DataFrame({"task_index": [0]}, index=pd.Index([opts.task], name="task")).to_parquet(
            tmp / "meta" / "tasks.parquet"
        )
        info = {
            "codebase_version": "v3.0",
            "robot_type": "car",
            "total_episodes": len(episodes),
            "total_frames": total,
            "total_tasks": 1,
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
            "steertime": {
                "source": source,
                "formats": sorted({d.format for d in drives}),
                "drives": [name for name, _, _ in episodes],
                "units": units,
                "codec": opts.codec,
                "problems": problems,
            },
        }
        write_json(tmp / "meta" / "info.json", info)
        write_json(tmp / "meta" / "stats.json", stats)
    return info


def _write_parquet(path: Path, table: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [], []
    for key, v in table.items():
        if key in ("observation.state", "action") and v.shape[1] > 1:
            flat = pa.array(v.reshape(-1), pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, v.shape[1]))
        elif key in ("observation.state", "action"):
            # LeRobot (datasets.Features) takes a feature of shape [1] for a scalar column
            # and refuses a one-element list: cast error when the dataset loads.
            arrays.append(pa.array(v[:, 0], pa.float32()))
        else:
            arrays.append(pa.array(v))
        names.append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)


def _write_episodes(tmp: Path, episodes: list[tuple[str, int, int]], fps: int, task: str) -> None:
    rows = []
    for e, (_, lo, hi) in enumerate(episodes):
        rows.append(
            {
                "episode_index": e,
                "tasks": [task],
                "length": hi - lo,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": lo,
                "dataset_to_index": hi,
                f"videos/{CAMERA_KEY}/chunk_index": 0,
                f"videos/{CAMERA_KEY}/file_index": 0,
                f"videos/{CAMERA_KEY}/from_timestamp": lo / fps,
                f"videos/{CAMERA_KEY}/to_timestamp": hi / fps,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
            }
        )
    path = tmp / EPISODES_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)


def cached_drives(path: str | Path) -> list[Drive]:
    """A prepared cache's drives as `Drive`s whose frames are the cache's (model size)."""
    from steertime.data.cache import Cache
    from steertime.data.frames import ArrayFrames

    cache = Cache.open(path)
    out = []
    for cd, entry in zip(cache.drives, cache.manifest["drives"], strict=True):
        frames = ArrayFrames(cd.n, lambda i, cd=cd: cd.read_frames(i, i + 1)[0], str(cd.path))
        out.append(
            Drive(
                name=cd.name,
                source=str(cache.path),
                format=str(entry.get("format", "cache")),
                timestamps=cd.timestamps,
                signals=dict(cd.signals),
                units=dict(cd.units),
                frames=frames,
                rows=cd.rows,
                problems=list(cd.problems),
            )
        )
    return out


def dataset_drives(source: str | Path, format: str | None = None, read_options=None) -> list[Drive]:
    """What `steertime export-dataset` exports: a prepared cache's drives (model-size
    frames) or a recording's in any format (camera frames)."""
    from steertime.data.resolve import CACHE, RECORDING, read_source, resolve

    src = resolve(source, format, read_options, accept=(CACHE, RECORDING))
    if src.kind == CACHE:
        return cached_drives(src.path)
    return read_source(src, read_options).drives


def export_dataset(
    source: str | Path,
    out: str | Path,
    options: ExportOptions | None = None,
    *,
    format: str | None = None,
    read_options=None,
    overwrite: bool = False,
) -> dict:
    """A cache or a recording (see `dataset_drives`) written as a LeRobot v3.0 dataset."""
    drives = dataset_drives(source, format, read_options)
    return export_lerobot(drives, out, options, source=str(source), overwrite=overwrite)
