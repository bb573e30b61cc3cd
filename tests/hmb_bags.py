"""Small HMB-shaped ROS1 bags written with `rosbags`' own writer (tests, benchmarks).

Real Challenge 2 bags are 4+ GB; these hold a few JPEG frames and a steering report
whose type (dbw_mkz_msgs/SteeringReport, 2016 layout) exists only inside the bag.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

STEERING_REPORT = """\
std_msgs/Header header
float32 steering_wheel_angle
float32 steering_wheel_angle_cmd
float32 steering_wheel_torque
float32 speed
bool enabled
bool override
bool driver
bool fault_wdc
bool fault_bus1
bool fault_bus2
bool fault_calibration
bool fault_connector
"""
REPORT_TYPE = "dbw_mkz_msgs/msg/SteeringReport"
CAMERA = "/center_camera/image_color/compressed"
T0_NS = 1_479_425_441_182_877_835  # a real HMB_3 frame_id


def frame_value(k: int) -> int:
    """The grey level of camera frame k: recovers the frame's index after JPEG."""
    return (k * 10) % 250


def steering_at(t_s: np.ndarray) -> np.ndarray:
    """The steering-wheel angle (rad) the test bags record at time t (s since T0)."""
    return 0.3 * np.sin(2 * np.pi * 0.5 * t_s)


def jpeg(value: int, size=(64, 48), noise: int = 0, seed: int = 0) -> bytes:
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        arr = np.clip(arr + rng.integers(-noise, noise + 1, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def steering_report(store, ns: int, seq: int, angle: float, speed: float, **torque) -> object:
    """A `dbw_mkz_msgs/SteeringReport` stamped `ns` (its type registered in `store`);
    `torque`: `steering_wheel_torque=…` where the report's type has the field."""
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    return store.types[REPORT_TYPE](
        header=Header(seq=seq, stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""),
        steering_wheel_angle=angle,
        steering_wheel_angle_cmd=0.0,
        **torque,
        speed=speed,
        enabled=False,
        override=False,
        driver=True,
        fault_wdc=False,
        fault_bus1=False,
        fault_bus2=False,
        fault_calibration=False,
        fault_connector=False,
    )


def write_hmb_bag(
    path: Path,
    n_frames: int,
    *,
    first_frame: int = 0,
    fps: float = 20.0,
    steering_hz: float = 50.0,
    steering: bool = True,
    compress: bool = True,
    size=(64, 48),
    noise: int = 0,
    torque_topic: bool = False,
    chunk_bytes: int | None = None,
) -> list[int]:
    """Write frames first_frame … first_frame+n_frames-1 of one drive; returns their stamps
    (ns). Frame k is stamped T0 + k/fps, with its grey level `frame_value(k)`.
    `torque_topic`: the report's type lacks the torque, which comes on /vehicle/torque
    (std_msgs/Float32, no header: its receive time stands in)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    report_def = STEERING_REPORT
    if torque_topic:
        report_def = report_def.replace("float32 steering_wheel_torque\n", "")
    store.register(get_types_from_msg(report_def, REPORT_TYPE))
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Image_ = store.types["sensor_msgs/msg/CompressedImage"]

    def header(ns: int, seq: int, frame_id: str) -> object:
        return Header(seq=seq, stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame_id)

    stamps = [T0_NS + round((first_frame + k) * 1e9 / fps) for k in range(n_frames)]
    msgs: list[tuple[int, str, bytes]] = []
    for k, ns in enumerate(stamps):
        data = jpeg(frame_value(first_frame + k), size, noise, seed=first_frame + k)
        msg = Image_(
            header=header(ns, k, "center_camera"),
            format="jpeg",
            data=np.frombuffer(data, np.uint8),
        )
        msgs.append((ns, CAMERA, store.serialize_ros1(msg, Image_.__msgtype__)))
    if steering:
        lo, hi = stamps[0] - 10**8, stamps[-1] + 10**8
        for j, ns in enumerate(range(lo, hi, round(1e9 / steering_hz))):
            t = (ns - T0_NS) * 1e-9
            torque = {} if torque_topic else {"steering_wheel_torque": 0.5}
            msg = steering_report(store, ns, j, float(steering_at(np.array(t))), 10.0 + t, **torque)
            msgs.append((ns, "/vehicle/steering_report", store.serialize_ros1(msg, REPORT_TYPE)))
            if torque_topic:
                f32 = store.types["std_msgs/msg/Float32"](data=0.25 + t)
                msgs.append((ns, "/vehicle/torque", store.serialize_ros1(f32, f32.__msgtype__)))
    msgs.sort(key=lambda m: m[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(path)
    if compress:
        writer.set_compression(Writer.CompressionFormat.BZ2)
    if chunk_bytes is not None:
        writer.chunk_threshold = chunk_bytes  # many chunks: the reader crosses their seams
    with writer:
        conns = {
            CAMERA: writer.add_connection(CAMERA, Image_.__msgtype__, typestore=store),
        }
        if steering:
            conns["/vehicle/steering_report"] = writer.add_connection(
                "/vehicle/steering_report", REPORT_TYPE, typestore=store
            )
        if steering and torque_topic:
            conns["/vehicle/torque"] = writer.add_connection(
                "/vehicle/torque", "std_msgs/msg/Float32", typestore=store
            )
        for ns, topic, raw in msgs:
            # record time a little after the stamp, as a recorder receives it
            writer.write(conns[topic], ns + 2_000_000, raw)
    return stamps
