"""Models: a registry of sequence models with a streaming-shaped forward."""

from steertime.models.base import SequenceModel, State, detach_state
from steertime.models.layout import OutputLayout
from steertime.models.registry import (
    create_encoder,
    create_model,
    list_encoders,
    list_models,
    model_config,
    register_encoder,
    register_model,
)

__all__ = [
    "OutputLayout",
    "SequenceModel",
    "State",
    "create_encoder",
    "create_model",
    "detach_state",
    "list_encoders",
    "list_models",
    "model_config",
    "register_encoder",
    "register_model",
]
