"""Physical units of driving signals and their conversion to canonical ones.

Canonical units: speed in m/s, time in seconds. Steering keeps its native unit
(datasets disagree on what "steering" even is) and records the factor that turns
it into radians and which angle that is (road wheel or steering wheel).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

STEERING_WHEEL = "steering_wheel"
ROAD_WHEEL = "road_wheel"


@dataclass(frozen=True)
class Unit:
    """The unit of one signal. `to_radians` is set for angles whose scale is known."""

    name: str
    to_radians: float | None = None
    angle_of: str | None = None  # STEERING_WHEEL, ROAD_WHEEL or None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Unit:
        return cls(**d)


DEG_STEERING_WHEEL = Unit("deg", math.pi / 180, STEERING_WHEEL)
RAD_STEERING_WHEEL = Unit("rad", 1.0, STEERING_WHEEL)
MPS = Unit("m/s")
FRACTION = Unit("fraction")

# Multiply a value in the key's unit by this to get m/s.
SPEED_TO_MPS = {"m/s": 1.0, "mps": 1.0, "km/h": 1 / 3.6, "kph": 1 / 3.6, "mph": 0.44704}


def speed_factor(unit: str, where: str) -> float:
    try:
        return SPEED_TO_MPS[unit.lower()]
    except KeyError:
        from steertime.errors import DataError

        raise DataError(
            f"unknown speed unit {unit!r}; use one of {sorted(SPEED_TO_MPS)}", where
        ) from None


def angle_unit(unit: str, angle_of: str | None, to_radians: float | None = None) -> Unit:
    """A steering unit from a name: deg and rad know their factor, others must be given."""
    known = {"deg": math.pi / 180, "degree": math.pi / 180, "degrees": math.pi / 180, "rad": 1.0}
    factor = to_radians if to_radians is not None else known.get(unit.lower())
    return Unit(unit, factor, angle_of)
