"""controlkit: train your own ControlNet, end to end."""

__version__ = "0.1.0"
