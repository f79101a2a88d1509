"""Joint-embedding predictive losses: a predictor's output against a target network's features.

- :func:`ijepa_loss` (Assran et al., 2023): predicted patch features against the target
  encoder's layer-normed features of the same patches.
- :func:`lejepa_loss` (Balestriero & LeCun, 2025, https://arxiv.org/abs/2511.08544): every
  view's embedding towards the mean of the global views', plus :func:`sigreg`, the sliced
  :func:`epps_pulley` test pulling the embeddings towards an isotropic Gaussian.
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


def epps_pulley(x: jax.typing.ArrayLike, *, t_max: float = 5.0, num_points: int = 17) -> jax.Array:
    """The Epps-Pulley statistic of each column of ``x`` ``(N, M)`` against N(0, 1): ``(M,)``.

    LeJEPA's univariate test (Balestriero & LeCun, 2025, after Epps & Pulley, 1983):
    ``T = N ∫ |φ̂(t) - φ(t)|² w(t) dt`` with the empirical characteristic function
    ``φ̂(t) = (1/N) Σ_n exp(i t x_n)``, the standard normal one ``φ(t) = exp(-t²/2)`` and the
    window ``w(t) = exp(-t²/2)``, integrated by the trapezoidal rule on ``num_points`` evenly
    spaced ``t`` in ``[-t_max, t_max]`` (the paper's snippet: 17 points on [-5, 5]). The
    authors' library integrates ``[0, 3]`` with 17 points and doubles it (the integrand is
    even), which is ``t_max=3, num_points=33`` here. ``N`` is the whole (global) batch.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"epps_pulley needs samples of shape (N, M); got {x.shape}.")
    if num_points < 2 or t_max <= 0:
        raise ValueError(
            f"epps_pulley needs num_points >= 2 and t_max > 0; got {num_points}, {t_max}."
        )
    t = jnp.linspace(-t_max, t_max, num_points)
    phi = jnp.exp(-0.5 * t**2)
    xt = x[:, :, None] * t  # (N, M, T)
    err = (jnp.mean(jnp.cos(xt), axis=0) - phi) ** 2 + jnp.mean(jnp.sin(xt), axis=0) ** 2
    dt = 2.0 * t_max / (num_points - 1)
    weights = jnp.full((num_points,), dt).at[jnp.array([0, -1])].set(0.5 * dt) * phi
    return x.shape[0] * (err @ weights)


def sigreg(
    z: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    num_slices: int = 256,
    t_max: float = 5.0,
    num_points: int = 17,
) -> jax.Array:
    """SIGReg, Sketched Isotropic Gaussian Regularisation (LeJEPA), of embeddings ``(N, K)``.

    ``num_slices`` directions ``a_m = g_m / ||g_m||`` with ``g_m ~ N(0, I_K)`` drawn from
    ``key`` (the same for every view of a step: the authors seed them with the step), the
    embeddings projected on each, and the :func:`epps_pulley` statistic of each projection
    averaged over the directions: ``(1/M) Σ_m T({a_mᵀ z_n})``. Zero in expectation only for
    ``z ~ N(0, I_K)``; a scalar.
    """
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2:
        raise ValueError(f"sigreg needs embeddings of shape (N, K); got {z.shape}.")
    directions = jax.random.normal(key, (z.shape[1], int(num_slices)))
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    return jnp.mean(epps_pulley(z @ directions, t_max=t_max, num_points=num_points))


def lejepa_loss(
    global_embeddings: jax.typing.ArrayLike,
    all_embeddings: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    lamb: float = 0.05,
    num_slices: int = 256,
    t_max: float = 5.0,
    num_points: int = 17,
) -> tuple[jax.Array, dict]:
    """LeJEPA's objective: ``(1 - λ) L_pred + λ L_SIGReg`` and its two terms.

    ``global_embeddings`` ``(Vg, N, K)``: the projections of the global views; ``all_embeddings``
    ``(V, N, K)``: those of every view (the global ones included). ``L_pred`` is the mean over
    views, images and dimensions of ``(c_n - z_{v,n})²`` with ``c_n`` the mean of image ``n``'s
    global-view embeddings (no stop-gradient: the centers are trained too); ``L_SIGReg`` the
    mean over the ``V`` views of :func:`sigreg` of each view's ``(N, K)`` embeddings, with one
    set of directions. Returns ``(loss, {"prediction": ..., "sigreg": ...})``.
    """
    g = jnp.asarray(global_embeddings, jnp.float32)
    a = jnp.asarray(all_embeddings, jnp.float32)
    if g.ndim != 3 or a.ndim != 3 or g.shape[1:] != a.shape[1:]:
        raise ValueError(
            "lejepa_loss needs global and all embeddings of shapes (Vg, N, K) and (V, N, K); "
            f"got {g.shape} and {a.shape}."
        )
    if not 0.0 <= lamb <= 1.0:
        raise ValueError(f"LeJEPA's lambda must lie in [0, 1]; got {lamb}.")
    centers = jnp.mean(g, axis=0)
    prediction = jnp.mean((centers[None] - a) ** 2)
    regulariser = jnp.mean(
        jax.vmap(
            lambda z: sigreg(z, key, num_slices=num_slices, t_max=t_max, num_points=num_points)
        )(a)
    )
    value = (1.0 - lamb) * prediction + lamb * regulariser
    return value, {"prediction": prediction, "sigreg": regulariser}
