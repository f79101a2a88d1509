"""Masked Siamese Networks' loss (Assran et al., 2022) and its prior-matching variant.

Transcribes the authors' ``init_msn_loss`` (facebookresearch/msn ``src/losses.py``) with
its prototypes as the soft-nearest-neighbour support (their ``proto_labels`` are the identity):
``p = softmax(ẑ Ĉᵀ / τ)`` for L2-normalised embeddings ``ẑ`` and prototypes ``Ĉ``; the targets
are the target view's ``p`` sharpened (``p^(1/T)``, renormalised), then Sinkhorn-balanced, then
repeated for every anchor view; the loss is their cross-entropy ``H(targets, p_anchor)``
averaged over the anchors, plus ``weight · KL(p̄ ‖ prior)`` with ``p̄`` the anchors' mean
prediction. With the uniform prior that term is MSN's mean-entropy maximisation
``log K - H(p̄)`` exactly; PMSN (Assran et al., 2023, "The Hidden Uniform Cluster Prior in
Self-Supervised Learning", https://arxiv.org/abs/2210.07277) puts a power law
``prior_k ∝ k^(-exponent)`` in its place.
"""

import jax
import jax.numpy as jnp

from ssl_jax.explicit_sharding import split_views
from ssl_jax.losses.clustering import sinkhorn_knopp
from ssl_jax.losses.normalize import l2_normalize


def power_law_prior(num_prototypes: int, exponent: float = 0.25) -> jax.Array:
    """``(K,)`` probabilities ``∝ k^(-exponent)``, ``k = 1 … K`` (PMSN's prior; 0: uniform)."""
    if num_prototypes < 1 or exponent < 0:
        raise ValueError(
            f"power_law_prior needs num_prototypes >= 1 and exponent >= 0; got "
            f"{num_prototypes}, {exponent}."
        )
    p = jnp.arange(1, num_prototypes + 1, dtype=jnp.float32) ** -float(exponent)
    return p / jnp.sum(p)


def msn_probabilities(z: jax.typing.ArrayLike, prototypes: jax.typing.ArrayLike, temperature):
    """``softmax(ẑ Ĉᵀ / τ)``, ``(N, K)``: the authors' ``snn`` with one label per prototype."""
    logits = (
        l2_normalize(jnp.asarray(z, jnp.float32))
        @ l2_normalize(jnp.asarray(prototypes, jnp.float32)).T
    )
    return jax.nn.softmax(logits / temperature, axis=-1)


def msn_loss(
    anchors: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    prototypes: jax.typing.ArrayLike,
    *,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    use_sinkhorn: bool = True,
    sinkhorn_iters: int = 3,
    regularization_weight: float = 1.0,
    prior: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, dict]:
    """MSN's loss of ``anchors`` ``(V * N, D)`` (view-major: rows ``v N … (v + 1) N - 1`` are
    view ``v``) against the target view's embeddings ``targets`` ``(N, D)`` and the
    ``prototypes`` ``(K, D)``; ``prior`` ``(K,)`` (``None``: uniform, MSN's me-max). The
    targets carry no gradient (the authors compute them under ``torch.no_grad``). Returns
    ``(loss, {"prediction", "regularization", "num_targets"})``; ``num_targets`` is how many
    prototypes are some target's argmax (the authors' ``np`` log).
    """
    anchors = jnp.asarray(anchors, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    n = targets.shape[0]
    if anchors.ndim != 2 or targets.ndim != 2 or anchors.shape[0] % n:
        raise ValueError(
            "msn_loss needs anchors (V * N, D) and targets (N, D); got "
            f"{anchors.shape} and {targets.shape}."
        )
    k = jnp.shape(prototypes)[0]
    probs = msn_probabilities(anchors, prototypes, temperature)
    target_probs = msn_probabilities(targets, prototypes, temperature)
    sharp = target_probs ** (1.0 / sharpen_temperature)
    sharp = sharp / jnp.sum(sharp, axis=1, keepdims=True)
    if use_sinkhorn:  # the authors balance the sharpened probabilities themselves: Q = sharp
        sharp = sinkhorn_knopp(jnp.log(sharp), epsilon=1.0, num_iters=sinkhorn_iters)
    sharp = jax.lax.stop_gradient(sharp)  # every anchor view of image n has target n
    log_probs = split_views(jnp.log(probs), anchors.shape[0] // n)  # (V, N, K)
    prediction = jnp.mean(jnp.sum(-sharp * log_probs, axis=-1))
    mean = jnp.mean(probs, axis=0)
    prior = jnp.full((k,), 1.0 / k) if prior is None else jnp.asarray(prior, jnp.float32)
    regularization = jnp.sum(mean * (jnp.log(mean) - jnp.log(prior)))
    value = prediction + regularization_weight * regularization
    num_targets = jnp.sum(jnp.max(jax.nn.one_hot(jnp.argmax(sharp, axis=1), k), axis=0))
    return value, {
        "prediction": prediction,
        "regularization": regularization,
        "num_targets": num_targets,
    }
