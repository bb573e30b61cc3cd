"""A built-in driving simulator: procedural roads, a forward camera, a bicycle-model car,
an expert driver, recording in the generic format, and closed-loop driving of a model."""

from steertime.sim.camera import CameraSpec, render
from steertime.sim.compare import compare_drives
from steertime.sim.drive import (
    OFFSET_LIMIT,
    DriveReport,
    RoadResult,
    RoadTrace,
    autonomy_difference,
    autonomy_interval,
    drive,
)
from steertime.sim.record import heldout_seeds, simulate, training_seeds
from steertime.sim.road import Road, make_road
from steertime.sim.world import World

__all__ = [
    "OFFSET_LIMIT",
    "CameraSpec",
    "DriveReport",
    "Road",
    "RoadResult",
    "RoadTrace",
    "World",
    "autonomy_difference",
    "autonomy_interval",
    "compare_drives",
    "drive",
    "heldout_seeds",
    "make_road",
    "render",
    "simulate",
    "training_seeds",
]
