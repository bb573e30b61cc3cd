"""Why doesn't it learn? Gradient flow through time and the long-term-memory lesson."""

from steertime.diagnostics.gradflow import gradient_through_time, memory_horizon
from steertime.diagnostics.memory import memory_task

__all__ = ["gradient_through_time", "memory_horizon", "memory_task"]
