"""SSL methods: one file per method, each a :class:`Method` of pure functions."""

import ml_collections

from ssl_jax.methods.base import Method
from ssl_jax.methods.simclr import make_simclr

METHODS = {"simclr": make_simclr}


def get_method(config: ml_collections.ConfigDict) -> Method:
    """Build the method named by ``config.method.name``."""
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is unknown; valid names: {sorted(METHODS)}.")
    return METHODS[name](config)


__all__ = ["METHODS", "Method", "get_method", "make_simclr"]
