"""The step protocol between steertime and a simulator bridge process (version 1).

The bridge runs in the simulator's own virtual environment (its numpy/scipy/pyglet pins
clash with steertime's), so the two talk over the bridge's stdin/stdout. Frames and
actions only — no pickle crosses the boundary, so neither side can run code the other
sent, and either side can be rewritten in another language.

Every message, both ways:

    4 bytes   big-endian unsigned length N of the header
    N bytes   UTF-8 JSON object (the header)
    M bytes   payload: M = header["nbytes"] (0 when absent)

Requests (`op`):
    hello                          → {"protocol": 1, "backend": ..., "maps": [...]}
    reset {map, seed, fps, height, width}
                                   → observation: the first frame at a start pose
    step {action: [v, omega]}      → observation after one control period (1/fps s)
    recover {ahead_m}              → observation: back on the lane centre ahead_m further on
    close                          → {} and the bridge exits

An observation header: {"ok": true, "t", "dist", "angle_rad", "ahead", "in_lane", "done", "speed",
"shape": [H, W, 3], "dtype": "uint8", "nbytes": H·W·3}, payload = the RGB frame, row
major. `dist` is the signed distance (m) of the robot from its lane's centre and
`angle_rad` its heading relative to the lane (signs as gym-duckietown's `get_lane_pos2`:
steering `+dist, +angle` brings it back); `ahead` = [forward, left] (m, robot frame) of
the lane centre 0.25 m further along (the expert's pure-pursuit point); `in_lane` false when the
simulator found no lane under the robot; `done` true when the simulator ended the
episode (off the road). Failures answer {"ok": false, "error": "one line"}.

This file imports only the standard library and numpy, so the bridge can import it
from the simulator's environment.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

import numpy as np

VERSION = 1
MAX_HEADER = 1 << 20  # a header is a small JSON object; anything larger is a broken stream
MAX_PAYLOAD = 1 << 28


class ProtocolError(Exception):
    """The byte stream does not follow the protocol (or the peer went away)."""


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise ProtocolError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def send(stream: BinaryIO, header: dict, payload: bytes = b"") -> None:
    header = dict(header, nbytes=len(payload)) if payload else header
    raw = json.dumps(header, separators=(",", ":")).encode()
    stream.write(struct.pack(">I", len(raw)) + raw + payload)
    stream.flush()


def receive(stream: BinaryIO) -> tuple[dict, bytes]:
    (n,) = struct.unpack(">I", _read_exact(stream, 4))
    if n > MAX_HEADER:
        raise ProtocolError(f"header of {n} bytes (at most {MAX_HEADER})")
    try:
        header = json.loads(_read_exact(stream, n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    m = header.get("nbytes", 0)
    if not isinstance(m, int) or not 0 <= m <= MAX_PAYLOAD:
        raise ProtocolError(f"bad payload size {m!r}")
    return header, _read_exact(stream, m) if m else b""


def frame_payload(frame: np.ndarray) -> tuple[dict, bytes]:
    """Header fields and payload of an RGB uint8 frame."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    return {"shape": list(frame.shape), "dtype": "uint8"}, frame.tobytes()


def decode_frame(header: dict, payload: bytes) -> np.ndarray:
    shape = header.get("shape")
    if (
        header.get("dtype") != "uint8"
        or not isinstance(shape, list)
        or len(shape) != 3
        or shape[2] != 3
        or int(np.prod(shape)) != len(payload)
    ):
        raise ProtocolError(f"frame header {shape!r} does not match {len(payload)} payload bytes")
    return np.frombuffer(payload, np.uint8).reshape(shape)
