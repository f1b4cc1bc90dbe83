"""controlkit: train your own ControlNet, end to end."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Heavy entry points load on first use, so ``import controlkit`` stays light."""
    if name == "generate":
        from controlkit.infer.generate import generate

        return generate
    raise AttributeError(f"module 'controlkit' has no attribute {name!r}")
