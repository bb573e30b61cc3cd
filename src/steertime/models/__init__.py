"""Models: a registry of sequence models with a streaming-shaped forward.

The package imports every model file (below) so their `@register_model` /
`@register_encoder` run; `registry.py` itself imports none of them.
"""

from steertime.models import (  # noqa: F401  (register)
    cnn_rnn,
    efficientnet,
    encoders,
    ensemble,
    pilotnet,
)
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
