"""Colorization pretext task (Zhang, Isola and Efros 2016): predict the ab colour of each pixel
from its lightness L, as a classification over quantised ab bins.

The pieces, in the paper's order:

- `colorization_inputs`: RGB images in [0, 1] to the network input ``L - 50`` and the target ab;
- `ab_gamut_bins`: the Q in-gamut cells of a grid over the ab plane (the classes);
- `quantize_ab` / `soft_encode_ab`: ab to the hard class and the soft target Z (section 2.1);
- `empirical_ab_prior` / `rebalance_weights`: the colour prior p and the class weights w
  (section 2.2), for :func:`ssl_jax.losses.colorization.rebalanced_cross_entropy`;
- `annealed_mean`: predicted class probabilities back to one ab value per pixel (section 2.3);
- `colorize`: L and ab back to an RGB picture.

All but `ab_gamut_bins` (a static NumPy table) are pure ``jnp`` functions that jit; their static
hyperparameters are checked at trace time.

References:
  Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016.
  https://arxiv.org/abs/1603.08511
"""

import functools
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment._batch import check_batch
from ssl_jax.pretext.lab import _linear_to_lab, _srgb_to_linear, lab_to_rgb, rgb_to_lab

L_CENTER = 50.0


def _check_positive(value: float, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}.")
    return float(value)


def ab_gamut_bins(grid: float = 10, extent: float = 110) -> np.ndarray:
    """Centres of the ab grid cells that hold the colour of at least one 8-bit sRGB value.

    The ab plane is cut into ``grid x grid`` squares centred on multiples of ``grid`` between
    ``-extent`` and ``extent`` (cell ``k`` covers ``[(k - 1/2) grid, (k + 1/2) grid)`` on each
    axis). All 256^3 8-bit sRGB colours are converted to L*a*b* in float64 (`rgb_to_lab`'s
    formula) and a cell is kept when at least one colour's ab falls in it. Every 8-bit colour's
    ab is therefore within ``grid / sqrt(2)`` of some bin. Colours outside the extent are dropped
    (none are for the default 110: sRGB spans a in [-86.2, 98.3], b in [-107.9, 94.5]).

    Zhang et al. keep "the Q = 313 values which are in-gamut" for grid 10 (``pts_in_hull.npy``
    in their repository). This construction gives Q = 261 for the defaults. Looser rules do not
    reach 313 either: the grid centres inside the convex hull of the sRGB ab gamut number 233,
    the cells meeting that hull 269. So at least 52 of their bins hold no 8-bit sRGB colour;
    no in-gamut target has such a bin as its nearest, so leaving them out only removes classes
    that a network would learn to give almost zero probability.

    Takes about a second; the result is cached (``functools.lru_cache``), so call it freely,
    outside or inside a trace.

    Args:
      grid: side of a cell in ab units (10 in the paper).
      extent: largest centre coordinate; rounded down to a multiple of ``grid``.

    Returns:
      Read-only ``(Q, 2)`` float32 array of (a, b) centres, sorted by a, then b.

    Examples:
      >>> ab_gamut_bins().shape
      (261, 2)
    """
    grid = _check_positive(grid, name="grid")
    if isinstance(extent, bool) or not isinstance(extent, Real) or not extent >= 0:
        raise ValueError(f"extent must be a number >= 0; got {extent!r}.")
    return _gamut_bins(grid, int(np.floor(extent / grid + 1e-9)))


@functools.lru_cache(maxsize=16)
def _gamut_bins(grid: float, half: int) -> np.ndarray:
    hit = np.zeros((2 * half + 1, 2 * half + 1), dtype=bool)
    linear = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0, np)
    for start in range(0, 256, 16):
        red = linear[start : start + 16, None, None]
        _, a, b = _linear_to_lab(red, linear[None, :, None], linear[None, None, :], np)
        cell_a, cell_b = (np.floor(c.ravel() / grid + 0.5).astype(np.int64) + half for c in (a, b))
        inside = (np.abs(cell_a - half) <= half) & (np.abs(cell_b - half) <= half)
        hit[cell_a[inside], cell_b[inside]] = True
    bins = (np.argwhere(hit) - half) * grid
    bins = bins.astype(np.float32)
    bins.flags.writeable = False
    return bins


def _check_ab(ab: jax.typing.ArrayLike, name: str = "ab") -> jax.Array:
    ab = jnp.asarray(ab)
    if ab.ndim < 1 or ab.shape[-1] != 2:
        raise ValueError(f"{name} must have a last axis of size 2, (..., 2); got shape {ab.shape}.")
    if not jnp.issubdtype(ab.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point; got dtype {ab.dtype}.")
    return ab.astype(jnp.promote_types(ab.dtype, jnp.float32))


def _check_bins(bins: jax.typing.ArrayLike) -> jax.Array:
    bins = jnp.asarray(bins)
    if bins.ndim != 2 or bins.shape[-1] != 2 or bins.shape[0] < 1:
        raise ValueError(
            f"bins must be a (Q, 2) array of ab centres, such as ab_gamut_bins(); got shape "
            f"{bins.shape}."
        )
    return bins


def _squared_distances(ab: jax.Array, bins: jax.Array) -> jax.Array:
    """``(..., Q)`` squared distances, as elementwise ops (no matmul, so exact on any chip)."""
    bins = bins.astype(ab.dtype)
    return jnp.square(ab[..., 0:1] - bins[:, 0]) + jnp.square(ab[..., 1:2] - bins[:, 1])


def quantize_ab(ab: jax.typing.ArrayLike, bins: jax.typing.ArrayLike) -> jax.Array:
    """Index of the nearest bin (Euclidean distance in ab) for each ab value.

    Ties go to the lower index, as in `soft_encode_ab`, so ``quantize_ab(ab, bins)`` equals
    ``argmax(soft_encode_ab(ab, bins), -1)``.

    Args:
      ab: ``(..., 2)`` ab values.
      bins: ``(Q, 2)`` bin centres, such as `ab_gamut_bins`.

    Returns:
      ``(...)`` int32 indices into ``bins``.

    Examples:
      >>> import jax.numpy as jnp
      >>> bins = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
      >>> quantize_ab(jnp.array([[1.0, 2.0], [8.0, -3.0], [-1.0, 7.0]]), bins).tolist()
      [0, 1, 2]
    """
    return _nearest_bin(_check_ab(ab), _check_bins(bins))


@jax.jit
def _nearest_bin(ab: jax.Array, bins: jax.Array) -> jax.Array:
    return jnp.argmin(_squared_distances(ab, bins), axis=-1).astype(jnp.int32)


def soft_encode_ab(
    ab: jax.typing.ArrayLike,
    bins: jax.typing.ArrayLike,
    *,
    neighbors: int = 5,
    sigma: float = 5.0,
) -> jax.Array:
    r"""Soft-encodes ab values over the bins: the target distribution Z of Zhang et al. (2.1).

    "For each ground truth [ab], we find the 5-nearest neighbors to [it] in the output space and
    weight them proportionally to their distance from the ground truth using a Gaussian kernel
    with :math:`\sigma = 5`": for the ``neighbors`` nearest bins :math:`c_q`,

    .. math::
        Z_q = \frac{\exp(-\lVert y - c_q \rVert^2 / 2\sigma^2)}
                   {\sum_{r \in \mathrm{kNN}(y)} \exp(-\lVert y - c_r \rVert^2 / 2\sigma^2)}

    and :math:`Z_q = 0` for every other bin. Computed as a softmax over the neighbours, so rows
    stay finite and normalised even for ab values far from every bin. The argmax is
    `quantize_ab`'s bin. Builds a ``(..., Q)`` distance array: encode at the network's output
    resolution (Zhang et al. predict at a quarter of the input's height and width).

    Args:
      ab: ``(..., 2)`` ab values.
      bins: ``(Q, 2)`` bin centres, such as `ab_gamut_bins`.
      neighbors: how many nearest bins get weight, 1 <= neighbors <= Q (1 gives one-hot).
      sigma: standard deviation of the Gaussian kernel in ab units, > 0.

    Returns:
      ``(..., Q)`` float32 (float64 for float64 ``ab``) rows that sum to 1.

    Examples:
      >>> import jax.numpy as jnp
      >>> bins = jnp.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
      >>> soft_encode_ab(jnp.array([5.0, 0.0]), bins, neighbors=2).tolist()
      [0.5, 0.5, 0.0]
    """
    ab = _check_ab(ab)
    bins = _check_bins(bins)
    q = bins.shape[0]
    if isinstance(neighbors, bool) or not isinstance(neighbors, Integral) or not 1 <= neighbors:
        raise ValueError(f"neighbors must be a positive integer; got {neighbors!r}.")
    if neighbors > q:
        raise ValueError(f"neighbors must be at most the number of bins Q={q}; got {neighbors}.")
    sigma = _check_positive(sigma, name="sigma")
    return _soft_encode(ab, bins, int(neighbors), sigma)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _soft_encode(ab: jax.Array, bins: jax.Array, neighbors: int, sigma: float) -> jax.Array:
    neg_d2, index = jax.lax.top_k(-_squared_distances(ab, bins), neighbors)
    weight = jax.nn.softmax(neg_d2 / (2.0 * sigma**2), axis=-1)
    batch, q = ab.shape[:-1], bins.shape[0]
    rows = jnp.arange(int(np.prod(batch)))[:, None]
    encoded = jnp.zeros((rows.shape[0], q), weight.dtype)
    encoded = encoded.at[rows, index.reshape(-1, neighbors)].set(weight.reshape(-1, neighbors))
    return encoded.reshape(*batch, q)


def empirical_ab_prior(
    ab: jax.typing.ArrayLike,
    bins: jax.typing.ArrayLike,
    *,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""The empirical colour distribution p: the share of pixels whose nearest bin is each bin.

    :math:`p_q = \frac{1}{M} \sum_{m} [\mathrm{quantize}(y_m) = q]` over the M pixels kept by
    ``where`` (Zhang et al. estimate it on the 1.3M ImageNet training images). To accumulate over
    a data set, add up ``M * p`` per batch: `rebalance_weights` accepts counts as well.

    Args:
      ab: ``(..., 2)`` ab values of a sample of pixels.
      bins: ``(Q, 2)`` bin centres, such as `ab_gamut_bins`.
      where: optional boolean ``(...)`` mask; only pixels where it is True are counted.

    Returns:
      ``(Q,)`` float32 probabilities summing to 1 (all zeros if no pixel is kept).

    Examples:
      >>> import jax.numpy as jnp
      >>> bins = jnp.array([[0.0, 0.0], [10.0, 0.0]])
      >>> empirical_ab_prior(jnp.array([[1.0, 0.0], [2.0, 1.0], [9.0, 0.0], [0.0, 3.0]]), bins)
      Array([0.75, 0.25], dtype=float32)
    """
    ab = _check_ab(ab)
    bins = _check_bins(bins)
    if where is None:
        where = jnp.ones(ab.shape[:-1], bool)
    where = jnp.asarray(where)
    if where.shape != ab.shape[:-1]:
        raise ValueError(
            f"where must have the shape {ab.shape[:-1]} of ab without its last axis; got "
            f"{where.shape}."
        )
    return _bin_frequencies(ab, bins, where)


@jax.jit
def _bin_frequencies(ab: jax.Array, bins: jax.Array, where: jax.Array) -> jax.Array:
    index = _nearest_bin(ab, bins).ravel()
    counts = jnp.bincount(index, weights=where.ravel().astype(jnp.float32), length=bins.shape[0])
    return counts / jnp.maximum(jnp.sum(counts), 1.0)


def rebalance_weights(
    prior: jax.typing.ArrayLike,
    bins: jax.typing.ArrayLike,
    *,
    lam: float = 0.5,
    sigma: float = 5.0,
) -> jax.Array:
    r"""Class-rebalancing weights w of Zhang et al. (section 2.2, eq. 4): rare colours weigh more.

    .. math::
        w \propto \big((1 - \lambda)\,\tilde p + \lambda / Q\big)^{-1}, \qquad
        \mathbb{E}_{\tilde p}[w] = \sum_q \tilde p_q w_q = 1,

    where :math:`\tilde p` is the empirical prior p "smooth[ed] with a Gaussian kernel
    :math:`G_\sigma`" (the paper uses :math:`\lambda = 1/2`, :math:`\sigma = 5`). The bins are
    not a full grid, so the smoothing is a normalised convolution over the in-gamut bins,

    .. math::
        \tilde p_q \propto \frac{\sum_r G_\sigma(c_q - c_r)\, p_r}{\sum_r G_\sigma(c_q - c_r)},

    renormalised to sum to 1: no mass leaks to cells outside the gamut and a uniform prior stays
    uniform (so its weights are all 1). ``sigma = 0`` turns smoothing off. The loss weighs each
    pixel by ``w[quantize_ab(y)]``.

    Args:
      prior: ``(Q,)`` non-negative colour frequencies p (`empirical_ab_prior`, or raw counts:
        they are normalised here).
      bins: ``(Q, 2)`` bin centres the prior was computed on.
      lam: weight of the uniform distribution in the mix, 0 < lam <= 1 (lam = 0 would give
        infinite weights to colours absent from the smoothed prior).
      sigma: standard deviation of the smoothing kernel in ab units, >= 0.

    Returns:
      ``(Q,)`` float32 weights with :math:`\sum_q \tilde p_q w_q = 1`.

    Examples:
      >>> import jax.numpy as jnp
      >>> bins = jnp.array([[0.0, 0.0], [50.0, 0.0]])
      >>> rebalance_weights(jnp.array([0.9, 0.1]), bins, lam=0.5).round(3)
      Array([0.882, 2.059], dtype=float32)
    """
    bins = _check_bins(bins)
    prior = jnp.asarray(prior)
    if prior.shape != (bins.shape[0],):
        raise ValueError(
            f"prior must have shape (Q,) = ({bins.shape[0]},), one entry per bin; got "
            f"{prior.shape}."
        )
    if isinstance(lam, bool) or not isinstance(lam, Real) or not 0.0 < lam <= 1.0:
        raise ValueError(f"lam must be a number in (0, 1]; got {lam!r}.")
    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not sigma >= 0:
        raise ValueError(f"sigma must be a number >= 0; got {sigma!r}.")
    prior = prior.astype(jnp.promote_types(prior.dtype, jnp.float32))
    return _rebalance(prior, bins, float(lam), float(sigma))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rebalance(prior: jax.Array, bins: jax.Array, lam: float, sigma: float) -> jax.Array:
    p = prior / jnp.sum(prior)
    if sigma > 0:
        centres = bins.astype(p.dtype)
        kernel = jnp.exp(-_squared_distances(centres, centres) / (2.0 * sigma**2))
        p = jnp.sum(kernel * p, axis=-1) / jnp.sum(kernel, axis=-1)
        p = p / jnp.sum(p)
    weights = 1.0 / ((1.0 - lam) * p + lam / bins.shape[0])
    return weights / jnp.sum(p * weights)


def annealed_mean(
    probs: jax.typing.ArrayLike,
    bins: jax.typing.ArrayLike,
    *,
    temperature: float = 0.38,
) -> jax.Array:
    r"""Decodes class probabilities to ab with the annealed mean of Zhang et al. (section 2.3).

    .. math::
        H(Z) = \sum_q f_T(Z)_q\, c_q, \qquad
        f_T(z)_q = \frac{\exp(\log z_q / T)}{\sum_r \exp(\log z_r / T)}

    T = 1 is the mean of the distribution (desaturated), T -> 0 its mode (vivid but patchy); the
    paper uses T = 0.38 for viewing. Computed as a softmax of :math:`\log z / T` with
    :math:`\log 0 = -\infty`, so zero probabilities and small T are exact and finite. For a
    network's logits s, ``probs = softmax(s)`` and :math:`f_T = \mathrm{softmax}(s / T)`.

    Args:
      probs: ``(..., Q)`` class probabilities (rows with some positive entry).
      bins: ``(Q, 2)`` bin centres.
      temperature: T > 0.

    Returns:
      ``(..., 2)`` ab values, float32 (float64 for float64 ``probs``).

    Examples:
      >>> import jax.numpy as jnp
      >>> bins = jnp.array([[0.0, 0.0], [10.0, 20.0]])
      >>> annealed_mean(jnp.array([0.5, 0.5]), bins).tolist()
      [5.0, 10.0]
    """
    probs = jnp.asarray(probs)
    bins = _check_bins(bins)
    if probs.ndim < 1 or probs.shape[-1] != bins.shape[0]:
        raise ValueError(
            f"probs must have a last axis of size Q={bins.shape[0]} (one per bin); got shape "
            f"{probs.shape}."
        )
    temperature = _check_positive(temperature, name="temperature")
    probs = probs.astype(jnp.promote_types(probs.dtype, jnp.float32))
    return _annealed_mean(probs, bins, temperature)


@functools.partial(jax.jit, static_argnums=2)
def _annealed_mean(probs: jax.Array, bins: jax.Array, temperature: float) -> jax.Array:
    positive = probs > 0
    log_probs = jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)), -jnp.inf)
    annealed = jax.nn.softmax(log_probs / temperature, axis=-1)[..., None]
    return jnp.sum(annealed * bins.astype(annealed.dtype), axis=-2)


def colorization_inputs(images: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Splits RGB images into the network input ``L - 50`` and the regression/class target ab.

    The input is the CIE lightness centred as the authors' demo code feeds their network
    (``img_l - 50``, "subtract 50 for mean-centering"), so it lies in [-50, 50]; the paper's text
    does not say. Divide
    by 100 for a unit-range input if the encoder has no normalisation in its first layers. The
    target ab is in raw L*a*b* units (about [-108, 98]), the units of `ab_gamut_bins`; Zhang
    et al. compute the loss on ab downsampled 4x to the network's output resolution, which is the
    caller's choice.

    Args:
      images: ``(N, H, W, 3)`` RGB floats in [0, 1].

    Returns:
      ``(l_channel, ab)``: ``(N, H, W, 1)`` L - 50 and ``(N, H, W, 2)`` ab, float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> l, ab = colorization_inputs(jnp.ones((1, 2, 2, 3)))
      >>> l.shape, ab.shape, round(float(l[0, 0, 0, 0]), 3)
      ((1, 2, 2, 1), (1, 2, 2, 2), 50.0)
    """
    images = check_batch(images)
    lab = rgb_to_lab(images)
    return lab[..., :1] - L_CENTER, lab[..., 1:]


def colorize(l_channel: jax.typing.ArrayLike, ab: jax.typing.ArrayLike) -> jax.Array:
    """Joins a centred L channel (as from `colorization_inputs`) and ab into RGB in [0, 1].

    If ``ab`` is at a lower resolution than L (the network's output), it is first resized to L's
    height and width (bilinearly; the authors' demo uses a spline zoom), so fine detail comes
    from the full-resolution L, as in their demo.

    Args:
      l_channel: ``(N, H, W, 1)`` lightness minus 50.
      ab: ``(N, h, w, 2)`` ab values (for example `annealed_mean` of the predictions).

    Returns:
      ``(N, H, W, 3)`` RGB in [0, 1], float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> l, ab = colorization_inputs(jnp.full((1, 4, 4, 3), 0.5))
      >>> float(jnp.max(jnp.abs(colorize(l, ab) - 0.5))) < 1e-5
      True
    """
    l_channel = jnp.asarray(l_channel)
    ab = _check_ab(ab)
    if l_channel.ndim != 4 or l_channel.shape[-1] != 1:
        raise ValueError(f"l_channel must have shape (N, H, W, 1); got {l_channel.shape}.")
    if ab.ndim != 4 or ab.shape[0] != l_channel.shape[0]:
        raise ValueError(
            f"ab must have shape (N, h, w, 2) with the N={l_channel.shape[0]} of l_channel; got "
            f"{ab.shape}."
        )
    l_channel = l_channel.astype(ab.dtype)
    if ab.shape[1:3] != l_channel.shape[1:3]:
        ab = jax.image.resize(ab, (*l_channel.shape[:3], 2), method="linear")
    return lab_to_rgb(jnp.concatenate([l_channel + L_CENTER, ab], axis=-1))
