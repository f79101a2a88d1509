"""Pure loss functions of arrays: no Flax, no config, no devices."""

from ssl_jax.losses.contrastive import nt_xent

__all__ = ["nt_xent"]
