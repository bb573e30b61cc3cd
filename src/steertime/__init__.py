"""steertime: recurrent networks that learn to steer a car through time."""

__version__ = "0.1.0"
