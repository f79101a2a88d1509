"""SSL methods: one file per method, each a :class:`Method` of pure functions."""

import ml_collections

from ssl_jax.methods.barlow_twins import make_barlow_twins
from ssl_jax.methods.base import Method
from ssl_jax.methods.byol import make_byol
from ssl_jax.methods.simclr import make_simclr
from ssl_jax.methods.simsiam import make_simsiam
from ssl_jax.methods.vicreg import make_vicreg

METHODS = {
    "barlow_twins": make_barlow_twins,
    "byol": make_byol,
    "simclr": make_simclr,
    "simsiam": make_simsiam,
    "vicreg": make_vicreg,
}


def get_method(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """Build the method named by ``config.method.name``.

    ``total_steps`` is the run's length, for methods with schedules of their own (BYOL's
    target momentum).
    """
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is unknown; valid names: {sorted(METHODS)}.")
    return METHODS[name](config, total_steps=total_steps)


__all__ = [
    "METHODS",
    "Method",
    "get_method",
    "make_barlow_twins",
    "make_byol",
    "make_simclr",
    "make_simsiam",
    "make_vicreg",
]
