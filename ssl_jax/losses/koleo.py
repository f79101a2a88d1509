"""KoLeo: the Kozachenko-Leonenko differential-entropy estimator as a spreading regulariser."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import leading_axis_result


def koleo_loss(x: ArrayLike, *, eps: float = 1e-8) -> jax.Array:
    r"""KoLeo regulariser (Sablayrolles et al., 2019), as DINOv2 applies it to the student's
    [CLS] features of each global crop.

    With :math:`\hat x_n = x_n / \max(\lVert x_n \rVert, \epsilon)` and
    :math:`d_n = \min_{m \ne n} \lVert \hat x_n - \hat x_m \rVert` the distance to the nearest
    other row,

    .. math::
        L = -\frac{1}{N} \sum_{n=1}^{N} \log(d_n + \epsilon)

    minimised when the rows spread out evenly on the sphere. As the authors' ``KoLeoLoss``:
    the neighbour is the row of largest dot product (the diagonal excluded: they fill it with
    -1, which ties with an antipodal row; here -inf, so a row is never its own neighbour), and
    the distance
    is PyTorch's ``PairwiseDistance(eps=1e-8)``, :math:`\lVert \hat x_n - \hat x_m +
    \epsilon \rVert`. The neighbour's index carries no gradient (an ``argmax``); both rows of
    a pair get one through the distance. ``x`` ``(N, D)``, ``N >= 2``; a float32 scalar.

    The neighbours are searched within ``x``: under a global-view ``jax.jit`` that is the
    global batch, where the authors search each GPU's batch (no ``all_gather``).

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # antipodal: distance 2
      >>> round(float(koleo_loss(x)), 4)  # -log 2
      -0.6931

    References:
      Sablayrolles et al., "Spreading vectors for similarity search", ICLR 2019.
      https://arxiv.org/abs/1806.03198 ; Oquab et al., "DINOv2", TMLR 2024, sec. 4;
      code: https://github.com/facebookresearch/dinov2 (``dinov2/loss/koleo_loss.py``).
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"koleo_loss expects (N, D) features with N >= 2, got {x.shape}.")
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps**2))
    rows = leading_axis_result(x)  # each row's products and neighbour stay with the row
    dots = jnp.matmul(x, x.T, out_sharding=rows)
    n = x.shape[0]
    dots = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, dots)
    nearest = jnp.argmax(jax.lax.stop_gradient(dots), axis=1)
    neighbours = x.at[nearest].get(out_sharding=rows)
    distances = jnp.sqrt(jnp.sum((x - neighbours + eps) ** 2, axis=-1))
    return -jnp.mean(jnp.log(distances + eps))
