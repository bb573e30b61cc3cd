"""Training: stateful truncated BPTT with clipping, checkpoints that resume exactly, DDP."""

from steertime.train.config import TrainConfig, apply_overrides, load_config
from steertime.train.loop import TrainingDiverged, train

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "apply_overrides",
    "load_config",
    "train",
]
