"""Crop and resize a camera frame to model input. Recorded in every cache and run so that
training, evaluation and the streaming predictor apply exactly the same transform."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from steertime.errors import SteertimeError

MAX_SIDE = 4096  # a model input larger than a 4K camera frame is a typo


@dataclass(frozen=True)
class FrameSpec:
    height: int = 66
    width: int = 200
    crop_top: int = 0
    crop_bottom: int = 0
    color: str = "RGB"
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise SteertimeError(f"frame size must be positive, got {self.height}x{self.width}")
        if max(self.height, self.width) > MAX_SIDE:
            # 100000x100000 was killed by the OOM killer mid-prepare: refuse it up front
            raise SteertimeError(
                f"frame size {self.height}x{self.width} is beyond {MAX_SIDE} pixels a side; "
                "a model input is a few hundred (e.g. 66x200)"
            )
        if self.crop_top < 0 or self.crop_bottom < 0:
            raise SteertimeError("crop rows must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: FrameSpec, theirs: str = "other") -> list[str]:
        """`field mine (theirs: other's)` for each field the two specs disagree on."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {v!r} ({theirs}: {b[k]!r})" for k, v in a.items() if v != b[k]]

    @classmethod
    def from_dict(cls, d: dict) -> FrameSpec:
        return cls(**d)

    def apply(self, frame: np.ndarray, where: str = "frame") -> np.ndarray:
        """(H0, W0, 3) uint8 RGB -> (height, width, 3) uint8 RGB."""
        h0 = frame.shape[0]
        if self.crop_top + self.crop_bottom >= h0:
            raise SteertimeError(
                f"{where}: crop {self.crop_top},{self.crop_bottom} removes all {h0} rows"
            )
        if self.crop_top or self.crop_bottom:
            frame = frame[self.crop_top : h0 - self.crop_bottom]
        if frame.shape[0] == self.height and frame.shape[1] == self.width:
            return np.ascontiguousarray(frame)
        im = Image.fromarray(np.ascontiguousarray(frame))
        return np.asarray(im.resize((self.width, self.height), Image.Resampling.BILINEAR))


# One rule for a frame whose size differs from the camera's (the first frame of a drive in
# `prepare`, the training camera in `predict`): the same aspect ratio within this share is
# rescaled, its crop rows scaled with it; another aspect ratio is skipped and reported.
FRAME_ASPECT_TOLERANCE = 0.02


class FrameSizeMismatch(ValueError):
    """One frame that cannot be fitted to the camera's (empty, another aspect ratio): the
    caller skips it and reports its row (prepare and predict follow the same rule)."""


def spec_for_size(
    spec: FrameSpec, hw: tuple[int, int], reference: tuple[int, int] | None
) -> FrameSpec:
    """`spec` for a frame of size `hw` from a camera of size `reference` (crop rows scaled
    with a same-aspect frame); raises FrameSizeMismatch saying why it cannot be fitted."""
    h, w = int(hw[0]), int(hw[1])
    if h <= 0 or w <= 0:
        raise FrameSizeMismatch(f"frame is empty ({w}x{h} pixels)")
    if not reference or (h, w) == tuple(reference):
        return spec
    h0, w0 = int(reference[0]), int(reference[1])
    if abs((w / h) / (w0 / h0) - 1) > FRAME_ASPECT_TOLERANCE:
        raise FrameSizeMismatch(
            f"frame is {w}x{h}, the camera's frames are {w0}x{h0} (another aspect ratio)"
        )
    scale = h / h0
    return FrameSpec(
        spec.height, spec.width, round(spec.crop_top * scale), round(spec.crop_bottom * scale)
    )


ASPECT_TOLERANCE = 0.05  # below this a resize is not a visible squash


def squash_warning(source_hw: tuple[int, int] | None, spec: FrameSpec) -> str:
    """A warning when cropping and resizing to `spec` changes the frames' aspect ratio
    (DeepTesla's 16:9 or a tub's 4:3 squashed into 66x200), else ''."""
    if not source_hw:
        return ""
    h0, w0 = source_hw[0] - spec.crop_top - spec.crop_bottom, source_hw[1]
    if h0 < 1:
        return ""
    change = (spec.width / spec.height) / (w0 / h0)
    if abs(change - 1) <= ASPECT_TOLERANCE:
        return ""
    how = "wider" if change > 1 else "narrower"
    return (
        f"frames of {w0}x{h0} (after the crop) are resized to {spec.width}x{spec.height}: "
        f"the image is stretched {change:.2f}x {how}, so shapes and angles in it change. "
        f"Fine if you mean it (PilotNet's 66x200); to keep the source, use --size native "
        f"or a size of the same aspect, e.g. --size {spec.height}x{round(spec.height * w0 / h0)}"
    )


def native_size(source_hw: tuple[int, int], crop_top: int, crop_bottom: int) -> tuple[int, int]:
    """The frame size after the crop, unresampled: what `--size native` keeps."""
    h = source_hw[0] - crop_top - crop_bottom
    if h < 1:
        raise SteertimeError(f"crop {crop_top},{crop_bottom} removes all {source_hw[0]} rows")
    return h, source_hw[1]


def parse_size(text: str) -> tuple[int, int]:
    """'66x200' -> (66, 200): height x width, as in PilotNet's paper."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SteertimeError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 66x200") from None
    return h, w


def parse_crop(text: str) -> tuple[int, int]:
    """'60,20' -> rows cut from the top and the bottom."""
    try:
        top, bottom = (int(x) for x in text.split(","))
    except ValueError:
        raise SteertimeError(f"crop {text!r} is not TOP,BOTTOM, e.g. 60,20") from None
    return top, bottom
