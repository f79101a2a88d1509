"""ssl_jax: self-supervised learning in JAX/Flax."""
