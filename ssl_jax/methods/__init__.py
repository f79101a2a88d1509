"""SSL methods: one file per method, each a :class:`~ssl_jax.method.Method` of pure functions.

``make_<name>(backbone, views, *, hyperparameters...)`` builds a method in plain JAX code;
each factory is declared with :func:`~ssl_jax.method.method_factory` (its name and the
kind of ``views`` it takes, its ``.views``). :func:`get_method` builds one from a run's config
(:mod:`ssl_jax.methods.registry`, which discovers the declared factories).
"""

from ssl_jax.methods.barlow_twins import make_barlow_twins
from ssl_jax.methods.byol import make_byol
from ssl_jax.methods.dino import make_dino
from ssl_jax.methods.moco import make_mocov2
from ssl_jax.methods.moco_v3 import make_mocov3
from ssl_jax.methods.registry import METHODS, get_method, hyperparameters, method_config
from ssl_jax.methods.simclr import make_simclr
from ssl_jax.methods.simsiam import make_simsiam
from ssl_jax.methods.swav import make_swav
from ssl_jax.methods.vicreg import make_vicreg

__all__ = [
    "METHODS",
    "get_method",
    "hyperparameters",
    "make_barlow_twins",
    "make_byol",
    "make_dino",
    "make_mocov2",
    "make_mocov3",
    "make_simclr",
    "make_simsiam",
    "make_swav",
    "make_vicreg",
    "method_config",
]
