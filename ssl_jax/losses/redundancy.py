"""Redundancy-reduction losses: statistics of the embedding dimensions over the batch (Barlow
Twins, VICReg, and TiCo's running covariance)."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import replicated_result
from ssl_jax.losses.contrastive import _check_pair
from ssl_jax.losses.normalize import l2_normalize


def _as_batch_pair(name: str, z1: ArrayLike, z2: ArrayLike) -> tuple[jax.Array, jax.Array]:
    z1 = jnp.asarray(z1)
    z2 = jnp.asarray(z2)
    _check_pair(name, z1, z2)
    if z1.shape[0] < 2:
        raise ValueError(
            f"{name} needs batch statistics, so a batch of at least 2 examples; "
            f"got shape {z1.shape}."
        )
    dtype = jnp.promote_types(jnp.result_type(z1, z2), jnp.float32)
    return z1.astype(dtype), z2.astype(dtype)


def _sum_off_diagonal_squares(m: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(jnp.eye(m.shape[0], dtype=bool), 0.0, jnp.square(m)))


def barlow_twins_loss(z1: ArrayLike, z2: ArrayLike, *, lambda_: float = 5e-3) -> jax.Array:
    r"""Cross-correlation of two views pushed to the identity, the Barlow Twins loss.

    Each embedding dimension is standardised over the batch, as a ``BatchNorm1d``
    without affine parameters in training mode (biased variance, eps inside the root):
    :math:`\hat z_{b,i} = (z_{b,i} - \mu_i) / \sqrt{\sigma_i^2 + 10^{-5}}`. Then

    .. math::
        \mathcal{C}_{ij} = \frac{1}{N} \sum_b \hat z^{(1)}_{b,i} \hat z^{(2)}_{b,j},
        \qquad
        \mathcal{L} = \sum_i (1 - \mathcal{C}_{ii})^2
                      + \lambda \sum_i \sum_{j \ne i} \mathcal{C}_{ij}^2

    (Barlow Twins eq. 1-2). The loss is a sum over dimensions, not a mean, as in the
    paper and the authors' ``main.py`` (``c = bn(z1).T @ bn(z2); c.div_(batch_size)``
    with global-batch statistics). Under a global-view ``jax.jit`` the batch axis is
    already global, so no ``all_reduce`` is needed. The standardisation is part of the
    loss (the authors keep it as a parameter-free layer in the model) and passes
    gradients through the batch mean and variance.

    The default ``lambda_=5e-3`` rounds the paper's value; the authors' code defaults to
    ``--lambd 0.0051``. Pass ``lambda_=0.0051`` to reproduce their runs exactly.

    Both views come from the same network: no stop-gradient is needed.

    Args:
      z1: ``(N, D)`` projections of the first views, ``N >= 2``.
      z2: ``(N, D)`` projections of the second views.
      lambda_: weight :math:`\lambda` of the redundancy-reduction (off-diagonal) term.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
      >>> round(float(barlow_twins_loss(z, z)), 6)
      0.0
      >>> round(float(barlow_twins_loss(z, z[:, ::-1])), 4)
      2.01

    References:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
      Reduction", ICML 2021. https://arxiv.org/abs/2103.03230
    """
    z1, z2 = _as_batch_pair("barlow_twins_loss", z1, z2)
    n = z1.shape[0]

    def standardise(z: jax.Array) -> jax.Array:
        z = z - jnp.mean(z, axis=0)
        return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=0) + 1e-5)

    out_sharding = replicated_result(z1, z2)  # the batch is contracted
    c = jnp.matmul(standardise(z1).T, standardise(z2), out_sharding=out_sharding) / n
    on_diagonal = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
    return on_diagonal + lambda_ * _sum_off_diagonal_squares(c)


def vicreg_terms(z1: ArrayLike, z2: ArrayLike) -> dict[str, jax.Array]:
    r"""The three unweighted VICReg terms, for :func:`vicreg_loss` and for logging.

    With :math:`\bar z = z - \operatorname{mean}_{\text{batch}}(z)`:

    - ``invariance``: :math:`\frac{1}{ND} \sum_{b,i} (z^{(1)}_{b,i} - z^{(2)}_{b,i})^2`.
    - ``variance``: :math:`\frac12 v(z^{(1)}) + \frac12 v(z^{(2)})` with
      :math:`v(z) = \frac1D \sum_i \max(0, 1 - \sqrt{\operatorname{Var}(z_{:,i}) + 10^{-4}})`,
      ``Var`` unbiased (divides by N - 1).
    - ``covariance``: :math:`c(z^{(1)}) + c(z^{(2)})` with
      :math:`c(z) = \frac1D \sum_{i \ne j} C_{ij}^2`, :math:`C = \bar z^\top \bar z / (N - 1)`.

    These follow the authors' ``main_vicreg.py``, whose defaults (25, 25, 1) were tuned
    for them. The paper's eq. 6 writes the invariance as a mean over the batch of the
    squared distance (no 1/D) and the variance as :math:`v(z^{(1)}) + v(z^{(2)})` (no
    1/2); the code divides by D (``F.mse_loss``) and halves the variance sum.

    Args:
      z1: ``(N, D)`` embeddings of the first views, ``N >= 2``.
      z2: ``(N, D)`` embeddings of the second views.

    Returns:
      ``{"invariance", "variance", "covariance"}``, each a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> terms = vicreg_terms(jnp.zeros((4, 3)), jnp.ones((4, 3)))
      >>> {k: round(float(v), 4) for k, v in terms.items()}
      {'invariance': 1.0, 'variance': 0.99, 'covariance': 0.0}
    """
    return _vicreg_terms("vicreg_terms", z1, z2)


def _vicreg_terms(name: str, z1: ArrayLike, z2: ArrayLike) -> dict[str, jax.Array]:
    z1, z2 = _as_batch_pair(name, z1, z2)
    n, d = z1.shape

    def variance_and_covariance(z: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = z - jnp.mean(z, axis=0)
        std = jnp.sqrt(jnp.sum(jnp.square(z), axis=0) / (n - 1) + 1e-4)
        cov = jnp.matmul(z.T, z, out_sharding=replicated_result(z)) / (n - 1)
        return jnp.mean(jax.nn.relu(1.0 - std)), _sum_off_diagonal_squares(cov) / d

    variance1, covariance1 = variance_and_covariance(z1)
    variance2, covariance2 = variance_and_covariance(z2)
    return {
        "invariance": jnp.mean(jnp.square(z1 - z2)),
        "variance": variance1 / 2 + variance2 / 2,
        "covariance": covariance1 + covariance2,
    }


def vicreg_loss(
    z1: ArrayLike,
    z2: ArrayLike,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
) -> jax.Array:
    r"""Variance-Invariance-Covariance Regularization, the VICReg loss.

    .. math::
        \mathcal{L} = \lambda\, s(z^{(1)}, z^{(2)})
                      + \mu \big[\tfrac12 v(z^{(1)}) + \tfrac12 v(z^{(2)})\big]
                      + \nu \big[c(z^{(1)}) + c(z^{(2)})\big]

    with the invariance :math:`s`, variance :math:`v` and covariance :math:`c` terms of
    :func:`vicreg_terms` (which gives them unweighted, for logging), as in the authors'
    ``main_vicreg.py``. The batch statistics are over the global batch, which under a
    global-view ``jax.jit`` needs no gather.

    Both views come from the same network: no stop-gradient is needed.

    Args:
      z1: ``(N, D)`` embeddings of the first views, ``N >= 2``.
      z2: ``(N, D)`` embeddings of the second views.
      sim_coeff: :math:`\lambda`, weight of the invariance term.
      std_coeff: :math:`\mu`, weight of the variance term.
      cov_coeff: :math:`\nu`, weight of the covariance term.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> collapsed = jnp.ones((4, 3))
      >>> round(float(vicreg_loss(collapsed, collapsed)), 4)
      24.75

    References:
      Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization
      for Self-Supervised Learning", ICLR 2022. https://arxiv.org/abs/2105.04906
    """
    terms = _vicreg_terms("vicreg_loss", z1, z2)
    return (
        sim_coeff * terms["invariance"]
        + std_coeff * terms["variance"]
        + cov_coeff * terms["covariance"]
    )


def tico_loss(
    z1: ArrayLike,
    z2: ArrayLike,
    covariance: ArrayLike,
    *,
    beta: float = 0.9,
    rho: float = 20.0,
) -> tuple[jax.Array, jax.Array]:
    r"""Transformation invariance and covariance contrast, the TiCo loss, and its new covariance.

    With the embeddings L2-normalised, a running second-moment matrix of the first views
    :math:`C_t = \beta C_{t-1} + (1 - \beta) \frac1N \sum_i z^{(1)}_i z^{(1)\top}_i` and

    .. math::
        \mathcal{L} = -\frac1N \sum_i z^{(1)\top}_i z^{(2)}_i
                      + \frac{\rho}{N} \sum_i z^{(1)\top}_i C_t z^{(1)}_i

    (Zhu et al. 2022, eq. 4-5 and Algorithm 1): the first term makes the two views agree,
    the second pushes each embedding away from the directions the recent batches fill, a
    contrast with an implicit memory bank of every earlier batch. :math:`C_{t-1}` carries no
    gradient (it is method state); the current batch's part of :math:`C_t` does, as in the
    paper's pseudo-code (``C = beta * C + (1 - beta) * B`` with ``B`` of this batch). The
    constant 1 that lightly adds to the loss is left out (it changes no gradient).

    Args:
      z1: ``(N, D)`` embeddings of the first views.
      z2: ``(N, D)`` embeddings of the second views.
      covariance: ``(D, D)`` :math:`C_{t-1}`, zeros at the start.
      beta: :math:`\beta \in [0, 1)`, the momentum of the covariance (0.9 in the paper).
      rho: :math:`\rho`, the weight of the covariance contrast (20 in the paper).

    Returns:
      ``(loss, new_covariance)``: the scalar loss and :math:`C_t` under
      ``jax.lax.stop_gradient``, to store as the next step's ``covariance``.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(2)
      >>> loss, c = tico_loss(z, z, jnp.zeros((2, 2)), beta=0.5, rho=1.0)
      >>> round(float(loss), 4), c.tolist()
      (-0.75, [[0.25, 0.0], [0.0, 0.25]])

    References:
      Zhu et al., "TiCo: Transformation Invariance and Covariance Contrast for
      Self-Supervised Visual Representation Learning", 2022. https://arxiv.org/abs/2206.10698
    """
    z1, z2 = _as_batch_pair("tico_loss", z1, z2)
    d = z1.shape[1]
    covariance = jnp.asarray(covariance)
    if covariance.shape != (d, d):
        raise ValueError(
            f"tico_loss expects a (D, D)=({d}, {d}) covariance, got {covariance.shape}."
        )
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"tico_loss needs 0 <= beta < 1, got beta={beta}.")
    z1 = l2_normalize(z1)
    z2 = l2_normalize(z2)
    n = z1.shape[0]
    batch = jnp.matmul(z1.T, z1, out_sharding=replicated_result(z1)) / n
    current = beta * jax.lax.stop_gradient(covariance.astype(z1.dtype)) + (1.0 - beta) * batch
    invariance = jnp.mean(jnp.sum(z1 * z2, axis=-1))
    contrast = jnp.mean(jnp.sum((z1 @ current) * z1, axis=-1))
    return -invariance + rho * contrast, jax.lax.stop_gradient(current)
