"""controlkit: train your own ControlNet, end to end."""

__version__ = "0.1.0"

_LAZY = {"generate": "controlkit.infer.generate", "GenerateConfig": "controlkit.infer.config"}


def __getattr__(name: str):
    """Heavy entry points load on first use, so ``import controlkit`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'controlkit' has no attribute {name!r}")
