"""LeRobot v3.0 datasets (`meta/info.json`, Parquet under data/, MP4 per camera).

Each episode is a drive. Its frames are the camera video's frames from the episode's
`from_timestamp` (frame number = round(timestamp x fps)); its signals are the named
entries of `observation.state` and `action`. A dataset written by `steertime
export-dataset` also gives back the log's own times (`source_timestamp`), rows
(`source_row`) and units; any other v3.0 dataset is read on its nominal clock
(`timestamp`), with units unknown. The camera is the first video feature, or the one
whose key ends with `--camera`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from steertime.data.drive import Drive, assemble_drives
from steertime.data.frames import VideoFrames
from steertime.data.readers import ReadOptions, register_reader
from steertime.data.units import Unit
from steertime.errors import DataError


def _info_path(path: Path) -> Path:
    return path / "meta" / "info.json" if path.is_dir() else path


def _info(path: Path) -> dict:
    f = _info_path(path)
    try:
        info = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read LeRobot info ({e})", f) from None
    if not isinstance(info, dict) or "features" not in info or "fps" not in info:
        raise DataError("not a LeRobot info.json (no features or fps)", f)
    return info


def mismatch(path: Path) -> str | None:
    """None for a LeRobot v3 dataset folder (or its meta/info.json); else why not."""
    f = _info_path(path)
    if f.name != "info.json" or not f.is_file():
        return "no meta/info.json"
    try:
        version = str(json.loads(f.read_text()).get("codebase_version", ""))
    except (OSError, json.JSONDecodeError, AttributeError):
        return "meta/info.json is not a JSON object"
    return None if version.startswith("v3") else f"codebase_version {version!r}, not v3.x"


def _parquets(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("chunk-*/file-*.parquet"))
    if not files:
        raise DataError("no chunk-*/file-*.parquet files", folder)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _camera(info: dict, camera: str | None, where: Path) -> str:
    keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    if not keys:
        raise DataError("the dataset has no video feature (camera)", where)
    if camera is None:
        return keys[0]
    hit = [k for k in keys if k.endswith(camera)]
    if not hit:
        raise DataError(f"no camera {camera!r}; the dataset has {', '.join(keys)}", where)
    return hit[0]


@register_reader("lerobot", "LeRobot v3.0 dataset (meta/info.json, Parquet, MP4)", mismatch)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    root = path if path.is_dir() else path.parent.parent
    info = _info(path)
    fps = float(info["fps"])
    key = _camera(info, opts.camera, root)
    data = _parquets(root / "data").sort_values("index", kind="stable")
    episodes = _parquets(root / "meta" / "episodes").sort_values("episode_index")
    ours = info.get("steertime", {})
    names = ours.get("drives", [])
    units = {k: Unit.from_dict(u) for k, u in ours.get("units", {}).items()}
    vector = [
        (col, info["features"][col].get("names") or [])
        for col in ("observation.state", "action")
        if col in data.columns and col in info["features"]
    ]
    video_path = info.get("video_path", "")
    drives: list[Drive] = []
    for _, ep in episodes.iterrows():
        e = int(ep["episode_index"])
        rows = data[data["episode_index"] == e].sort_values("frame_index")
        if rows.empty:
            continue
        video = root / video_path.format(
            video_key=key,
            chunk_index=int(ep[f"videos/{key}/chunk_index"]),
            file_index=int(ep[f"videos/{key}/file_index"]),
        )
        if not video.is_file():
            raise DataError(f"episode {e}: its video is missing", video)
        first = round(float(ep[f"videos/{key}/from_timestamp"]) * fps)
        frames = VideoFrames(video, first + rows["frame_index"].to_numpy(np.int64))
        signals: dict[str, np.ndarray] = {}
        for col, sig_names in vector:
            # shape [1] is a scalar column (as LeRobot writes it), longer ones lists
            m = np.stack(rows[col].to_numpy()).reshape(len(rows), -1)
            for j, n in enumerate(sig_names):
                signals[str(n)] = m[:, j].astype(np.float64)
        t_col = "source_timestamp" if "source_timestamp" in rows else "timestamp"
        row_col = "source_row" if "source_row" in rows else "index"
        drives += assemble_drives(
            name=names[e] if e < len(names) else f"episode_{e:06d}",
            source=root,
            format="lerobot",
            timestamps=rows[t_col].to_numpy(np.float64),
            signals=signals,
            units={n: units.get(n, Unit("unknown")) for n in signals},
            frames=frames,
            rows=rows[row_col].to_numpy(np.int64),
            max_gap_s=opts.max_gap_s,
            strict=opts.strict,
        )
    if not drives:
        raise DataError("no episode with frames", root)
    return drives
