"""Udacity Challenge 2 ROS1 bags (HMB_1 … HMB_6), read without ROS.

Topics: `/center_camera/image_color/compressed` (sensor_msgs/CompressedImage, JPEG; left
and right cameras when asked), `/vehicle/steering_report` (dbw_mkz_msgs/SteeringReport:
`steering_wheel_angle` rad of steering-wheel angle, `speed` m/s, `steering_wheel_torque`
N·m where the type has it) and, when present, `/vehicle/torque` for the torque.

Times are the messages' header stamps (what udacity-driving-reader writes and what
Challenge 2's `frame_id` is). Steering, speed and torque are linearly interpolated onto
each camera frame's stamp; a frame further than MAX_EXTRAPOLATE_S outside the span of a
signal gets no value and is dropped. A frame's `row` is its stamp in nanoseconds, so
predictions join the Challenge 2 evaluation file exactly.

Several bags of one drive (a folder of bags, or bags split by `rosbag record --split`)
are put in time order and read as one timeline: a bag that starts within the gap limit of
the previous one's end continues its drive, and signals interpolate across the seam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steertime.data.drive import Drive, assemble_drives, interpolate_to
from steertime.data.readers import ReadOptions, register_reader
from steertime.data.readers.rosbag import (
    COMPRESSED_IMAGE,
    BagFrames,
    header_stamp_ns,
    is_bag,
    messages,
    open_bag,
    typestore_of,
)
from steertime.data.units import MPS, RAD_STEERING_WHEEL, Unit
from steertime.errors import DataError

CAMERAS = {
    "center": "/center_camera/image_color/compressed",
    "left": "/left_camera/image_color/compressed",
    "right": "/right_camera/image_color/compressed",
}
STEERING_TOPIC = "/vehicle/steering_report"
TORQUE_TOPIC = "/vehicle/torque"
# The steering report runs at ~50 Hz: a frame 0.1 s beyond it has no trustworthy value.
MAX_EXTRAPOLATE_S = 0.1
TORQUE = Unit("N*m")


def _bags(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if is_bag(path) else []
    if path.is_dir():
        return sorted(p for p in path.iterdir() if is_bag(p))
    return []


def mismatch(path: Path) -> str | None:
    """None for a ROS1 .bag file or a folder holding .bag files; else why not."""
    return None if _bags(path) else "no ROS1 .bag file (#ROSBAG V2.0) here"


@dataclass
class _Bag:
    """What one pass over a bag's index and small messages found."""

    path: Path
    stamps: np.ndarray  # camera header stamps, ns, in the bag's message order
    signals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)


def _topic_conns(reader, topic: str) -> list:
    return [c for c in reader.connections if c.topic == topic]


class _Fields:
    """Collects (stamp ns, chosen fields) of one topic's messages, as floats."""

    def __init__(self, store, msgtype: str, names: tuple[str, ...], path: Path) -> None:
        try:
            fields = [f[0] for f in store.fielddefs[msgtype][1]]
        except KeyError:
            raise DataError(f"the bag does not define its type {msgtype}", path) from None
        self.store, self.msgtype = store, msgtype
        self.have = [n for n in names if n in fields]
        self.stamped = "header" in fields  # else the recorder's receive time stands in
        self.t: list[int] = []
        self.vals: dict[str, list[float]] = {n: [] for n in self.have}

    def add(self, raw: bytes | memoryview, received_ns: int) -> None:
        msg = self.store.deserialize_ros1(raw, self.msgtype)
        if self.stamped:
            stamp = msg.header.stamp
            self.t.append(stamp.sec * 1_000_000_000 + stamp.nanosec)
        else:
            self.t.append(received_ns)
        for n in self.have:
            self.vals[n].append(float(getattr(msg, n)))

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        if name not in self.vals or not self.t:
            return None
        return np.asarray(self.t, np.int64), np.asarray(self.vals[name], np.float64)


STEER_FIELDS = {
    "steering": "steering_wheel_angle",
    "speed": "speed",
    "torque": "steering_wheel_torque",
}


def _scan(path: Path, topic: str, need_steering: bool) -> _Bag:
    """One pass over the camera and signal topics (a bz2 bag's chunks are decompressed
    once here, once more when the frames are read)."""
    reader = open_bag(path)
    try:
        topics = sorted({c.topic for c in reader.connections})
        cam = _topic_conns(reader, topic)
        if not cam:
            raise DataError(f"no {topic} topic (topics: {', '.join(topics) or 'none'})", path)
        if cam[0].msgtype != COMPRESSED_IMAGE:
            raise DataError(f"{topic} holds {cam[0].msgtype}, not {COMPRESSED_IMAGE}", path)
        store = typestore_of(reader, path)
        steer = _topic_conns(reader, STEERING_TOPIC)
        torque = _topic_conns(reader, TORQUE_TOPIC)
        readers: dict[str, _Fields] = {}
        if steer:
            readers[STEERING_TOPIC] = _Fields(
                store, steer[0].msgtype, tuple(STEER_FIELDS.values()), path
            )
            if STEER_FIELDS["steering"] not in readers[STEERING_TOPIC].have:
                raise DataError(
                    f"{STEERING_TOPIC} ({steer[0].msgtype}) has no steering_wheel_angle", path
                )
        if torque:
            readers[TORQUE_TOPIC] = _Fields(
                store, torque[0].msgtype, ("steering_wheel_torque", "torque", "data"), path
            )
        stamps_: list[int] = []
        for c, received, raw in messages(reader, cam + steer + torque):
            if c.topic == topic:
                stamps_.append(header_stamp_ns(raw))
            else:
                readers[c.topic].add(raw, received)
    finally:
        reader.close()
    stamps = np.asarray(stamps_, np.int64)
    bag = _Bag(path, stamps, topics=topics)
    if STEERING_TOPIC in readers:
        for name, key in STEER_FIELDS.items():
            if (series := readers[STEERING_TOPIC].series(key)) is not None:
                bag.signals[name] = series
    if TORQUE_TOPIC in readers and "torque" not in bag.signals:
        f = readers[TORQUE_TOPIC]
        if f.have and (series := f.series(f.have[0])) is not None:
            bag.signals["torque"] = series
    if need_steering and len(stamps) and "steering" not in bag.signals:
        raise DataError(
            f"{len(stamps)} camera frames but no {STEERING_TOPIC} messages, so nothing to "
            f"train or score on (topics: {', '.join(topics)}); to run a model over the "
            "frames alone, give --format udacity_bag_frames",
            path,
        )
    return bag


def _groups(bags: list[_Bag], max_gap_s: float) -> list[list[int]]:
    """Bags in time order, chained while each starts within `max_gap_s` of the last end."""
    order = sorted(range(len(bags)), key=lambda k: int(bags[k].stamps.min()))
    groups: list[list[int]] = []
    end = None
    for k in order:
        s = bags[k].stamps
        if end is None or (int(s.min()) - end) * 1e-9 > max_gap_s:
            groups.append([])
        groups[-1].append(k)
        end = int(s.max()) if end is None else max(end, int(s.max()))
    return groups


def _drive_of(
    group: list[int], bags: list[_Bag], topic: str, opts: ReadOptions, need_steering: bool
) -> list[Drive]:
    parts = [bags[k] for k in group]
    stamps = np.concatenate([b.stamps for b in parts])
    bag_ix = np.concatenate([np.full(len(b.stamps), k) for k, b in zip(group, parts, strict=True)])
    ordinal = np.concatenate([np.arange(len(b.stamps)) for b in parts])
    t = stamps * 1e-9
    problems: list[str] = []
    signals: dict[str, np.ndarray] = {}
    units = {"steering": RAD_STEERING_WHEEL, "speed": MPS, "torque": TORQUE}
    for name in ("steering", "speed", "torque"):
        have = [b.signals[name] for b in parts if name in b.signals]
        if not have:
            if name != "steering" or not need_steering:
                problems.append(f"no {name} in {', '.join(b.path.name for b in parts)}")
            continue
        ts = np.concatenate([h[0] for h in have]) * 1e-9
        signals[name] = interpolate_to(
            t, ts, np.concatenate([h[1] for h in have]), MAX_EXTRAPOLATE_S
        )
    names = [b.path.stem for b in parts]
    name = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
    if len(parts) > 1:
        problems.append(f"{len(parts)} bags read as one drive: {', '.join(names)}")
    return assemble_drives(
        name=name,
        source=parts[0].path if len(parts) == 1 else parts[0].path.parent,
        format="udacity_bag" if need_steering else "udacity_bag_frames",
        timestamps=t,
        signals=signals,
        units={k: units[k] for k in signals},
        frames=BagFrames([b.path for b in bags], topic, bag_ix, ordinal),
        rows=stamps,
        max_gap_s=opts.max_gap_s,
        strict=opts.strict,
        problems=problems,
    )


def read_bags(path: Path, opts: ReadOptions, need_steering: bool = True) -> list[Drive]:
    """Every drive in a bag or a folder of bags (`need_steering=False`: frames alone)."""
    camera = opts.camera or "center"
    if camera not in CAMERAS:
        raise DataError(f"unknown camera {camera!r}; use one of {', '.join(CAMERAS)}", path)
    topic = CAMERAS[camera]
    paths = _bags(path)
    if not paths:
        raise DataError("no ROS1 .bag file here", path)
    bags = [_scan(p, topic, need_steering) for p in paths]
    empty = [b.path.name for b in bags if len(b.stamps) == 0]
    bags = [b for b in bags if len(b.stamps)]
    if not bags:
        raise DataError(f"no {topic} messages in {', '.join(empty)}", path)
    drives: list[Drive] = []
    for group in _groups(bags, opts.max_gap_s):
        drives += _drive_of(group, bags, topic, opts, need_steering)
    for d in drives:
        d.problems += [f"{n}: no {topic} messages; skipped" for n in empty]
    return drives


@register_reader(
    "udacity_bag", "Udacity Challenge 2 ROS1 bag(s): JPEG camera + steering report", mismatch
)
def read(path: Path, opts: ReadOptions) -> list[Drive]:
    return read_bags(path, opts)


def _frames_only(path: Path) -> str | None:
    return "chosen with --format only (a bag's camera frames, steering not required)"


@register_reader(
    "udacity_bag_frames",
    "Udacity ROS1 bag(s), camera frames with whatever signals exist (e.g. a test bag "
    "without steering); only with --format",
    _frames_only,
)
def read_frames(path: Path, opts: ReadOptions) -> list[Drive]:
    return read_bags(path, opts, need_steering=False)
