"""Joint-embedding predictive losses: a predictor's output against a target network's features.

- :func:`ijepa_loss` (Assran et al., 2023): predicted patch features against the target
  encoder's layer-normed features of the same patches.
"""

import jax
import jax.numpy as jnp

IJEPA_LOSSES = ("smooth_l1", "l2")


def ijepa_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    kind: str = "smooth_l1",
    beta: float = 1.0,
) -> jax.Array:
    """I-JEPA's prediction loss over ``(N, M, K, D)`` predictions and targets: ``N`` images,
    ``M`` target blocks of ``K`` patches, ``D`` features (any leading shape works).

    ``kind="smooth_l1"`` (the authors' code, ``F.smooth_l1_loss(z, h)``, the default): the
    mean over every element of ``0.5 d² / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``,
    ``d = prediction - target``. ``kind="l2"`` (the paper's eq. 1,
    ``(1/M) Σ_i Σ_{j ∈ B_i} ||ŝ_j - s_j||²``): per image, the squared L2 distance summed over
    each block's patches and averaged over the blocks, then averaged over images. Targets are
    taken as given: the caller stops their gradient. Returns a float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(ijepa_loss(jnp.zeros((1, 1, 1, 2)), jnp.array([[[[0.5, 3.0]]]])))
      1.3125
    """
    predictions = jnp.asarray(predictions, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    if predictions.shape != targets.shape or predictions.ndim < 3:
        raise ValueError(
            "ijepa_loss needs predictions and targets of one shape (N, M, K, D); got "
            f"{predictions.shape} and {targets.shape}."
        )
    diff = predictions - targets
    if kind == "smooth_l1":
        if beta <= 0:
            raise ValueError(f"smooth_l1's beta must be positive; got {beta}.")
        a = jnp.abs(diff)
        return jnp.mean(jnp.where(a < beta, 0.5 * diff**2 / beta, a - 0.5 * beta))
    if kind == "l2":
        return jnp.mean(jnp.sum(diff**2, axis=(-2, -1)))
    raise ValueError(f"ijepa loss kind={kind!r} is unknown; valid: {list(IJEPA_LOSSES)}.")
