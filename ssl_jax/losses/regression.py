"""Regression losses: an online prediction regresses a target embedding of the other view."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.losses.contrastive import _check_pair


def _normalized_pair(
    name: str, p: ArrayLike, z: ArrayLike, eps_squared: float
) -> tuple[jax.Array, jax.Array]:
    """Two ``(N, D)`` arrays, rows divided by their norms (squared norms clamped below)."""
    p = jnp.asarray(p)
    z = jnp.asarray(z)
    _check_pair(name, p, z)
    dtype = jnp.promote_types(jnp.result_type(p, z), jnp.float32)
    p = p.astype(dtype)
    z = z.astype(dtype)
    p = p * jax.lax.rsqrt(jnp.maximum(jnp.sum(p * p, axis=-1, keepdims=True), eps_squared))
    z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), eps_squared))
    return p, z


def byol_loss(p: ArrayLike, z: ArrayLike) -> jax.Array:
    r"""Normalised mean squared error between predictions and targets, the BYOL loss.

    ``p[i]`` is the online network's prediction for one view of image ``i`` and
    ``z[i]`` the target network's projection of the other view:

    .. math::
        \ell_i = \Big\lVert \frac{p_i}{\lVert p_i\rVert} - \frac{z_i}{\lVert z_i\rVert}
                 \Big\rVert_2^2 = 2 - 2\,\frac{p_i^\top z_i}{\lVert p_i\rVert \lVert z_i\rVert}

    and the loss is the mean of :math:`\ell_i` over the batch (BYOL eq. 2). Computed as
    the squared difference of normalised vectors, as the authors' ``regression_loss``
    does, with each squared norm clamped at 1e-12 like their ``l2_normalize``.

    One call is one view ordering. BYOL symmetrises by swapping the views,
    :math:`\mathcal{L} = \ell(p_1, z_2) + \ell(p_2, z_1)`; that sum is the method's job.

    The loss passes gradients to both inputs. BYOL trains only the online network: the
    method should wrap ``z`` in ``jax.lax.stop_gradient``.

    Args:
      p: ``(N, D)`` online predictions.
      z: ``(N, D)`` target projections of the other view.

    Returns:
      Scalar loss in ``[0, 4]``, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> p = jnp.array([[1.0, 0.0], [0.0, 2.0]])
      >>> float(byol_loss(p, 3.0 * p)), float(byol_loss(p, p[::-1]))
      (0.0, 2.0)

    References:
      Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
      Learning", NeurIPS 2020. https://arxiv.org/abs/2006.07733
    """
    p, z = _normalized_pair("byol_loss", p, z, 1e-12)
    return jnp.mean(jnp.sum(jnp.square(p - z), axis=-1))


def simsiam_loss(p: ArrayLike, z: ArrayLike) -> jax.Array:
    r"""Negative cosine similarity between predictions and projections, the SimSiam loss.

    ``p[i]`` is the predictor output for one view of image ``i`` and ``z[i]`` the
    projection of the other view, both from the same encoder:

    .. math::
        \mathcal{D}(p, z) = -\frac{1}{N} \sum_i
            \frac{p_i^\top z_i}{\lVert p_i\rVert \lVert z_i\rVert}

    (SimSiam eq. 1, Algorithm 1). Each norm is clamped at 1e-8 like
    ``torch.nn.CosineSimilarity``, which the authors use.

    One call is one view ordering. SimSiam symmetrises with a half:
    :math:`\mathcal{L} = \tfrac12 \mathcal{D}(p_1, z_2) + \tfrac12 \mathcal{D}(p_2, z_1)`;
    that average is the method's job.

    The loss passes gradients to both inputs. The stop-gradient on ``z`` is what keeps
    SimSiam from collapsing (its section 4.1): the method must wrap ``z`` in
    ``jax.lax.stop_gradient``.

    Args:
      p: ``(N, D)`` predictions.
      z: ``(N, D)`` projections of the other view.

    Returns:
      Scalar loss in ``[-1, 1]``, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> p = jnp.array([[1.0, 0.0], [0.0, 2.0]])
      >>> float(simsiam_loss(p, 3.0 * p)), float(simsiam_loss(p, -p))
      (-1.0, 1.0)

    References:
      Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
      https://arxiv.org/abs/2011.10566
    """
    p, z = _normalized_pair("simsiam_loss", p, z, 1e-16)
    return -jnp.mean(jnp.sum(p * z, axis=-1))
