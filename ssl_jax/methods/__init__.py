"""SSL methods: one file per method, each a :class:`Method` of pure functions."""

import ml_collections

from ssl_jax.methods.barlow_twins import make_barlow_twins
from ssl_jax.methods.base import Method
from ssl_jax.methods.byol import make_byol
from ssl_jax.methods.dino import make_dino
from ssl_jax.methods.moco import make_mocov2
from ssl_jax.methods.moco_v3 import make_mocov3
from ssl_jax.methods.simclr import make_simclr
from ssl_jax.methods.simsiam import make_simsiam
from ssl_jax.methods.swav import make_swav
from ssl_jax.methods.vicreg import make_vicreg

METHODS = {
    "barlow_twins": make_barlow_twins,
    "byol": make_byol,
    "dino": make_dino,
    "mocov2": make_mocov2,
    "mocov3": make_mocov3,
    "simclr": make_simclr,
    "simsiam": make_simsiam,
    "swav": make_swav,
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
    "make_dino",
    "make_mocov2",
    "make_mocov3",
    "make_simclr",
    "make_simsiam",
    "make_swav",
    "make_vicreg",
]
