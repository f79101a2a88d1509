"""Every public loss on a batch split over 8 devices, under Explicit and Auto mesh axes, jitted:
the value of one device.

Explicit axes type each array with its sharding, so a loss whose batch contraction or
batch-by-batch product has no stated result sharding raises ``ShardingTypeError`` there while
Auto axes let XLA choose (:mod:`ssl_jax.explicit_sharding`).
"""

import functools

import jax
import numpy as np
import pytest

from ssl_jax import losses
from tests.meshes import MESH_KINDS, run_sharded

N, D, K, Q = 16, 6, 5, 4  # batch (2 per device), embedding dim, queue length, colour bins
_rng = np.random.default_rng(0)
z1, z2 = _rng.normal(size=(2, N, D)).astype(np.float32)
queue = _rng.normal(size=(K, D)).astype(np.float32)
student = _rng.normal(size=(4, N, D)).astype(np.float32)  # 2 global + 2 local crops
teacher = _rng.normal(size=(2, N, D)).astype(np.float32)
center = _rng.normal(size=(D,)).astype(np.float32)
codes = _rng.dirichlet(np.ones(D), size=(2, N)).astype(np.float32)
pixels = _rng.normal(size=(N, 3, 3, Q)).astype(np.float32)
soft_targets = _rng.dirichlet(np.ones(Q), size=(N, 3, 3)).astype(np.float32)
pixel_mask = _rng.uniform(size=(N, 3, 3)) > 0.3
patches_s, patches_t = _rng.normal(size=(2, 2, N, 3, D)).astype(np.float32)  # (T, N, L, K)
patch_probs = _rng.dirichlet(np.ones(D), size=(2, N, 3)).astype(np.float32)
patch_mask = _rng.uniform(size=(2, N, 3)) > 0.4
blocks = _rng.normal(size=(2, N, 2, 3, D)).astype(np.float32)  # I-JEPA's (N, M, K, D) twice
tokens = _rng.integers(0, Q, size=(N, 3)).astype(np.int32)
token_weights = (_rng.uniform(size=(N, 3)) > 0.3).astype(np.float32)
key = jax.random.key(1)

# name -> (function, arguments, the batch axis of each argument (None: not batched)).
CASES = {
    "ab_regression_loss": (
        lambda p, t, m: losses.ab_regression_loss(p, t, where=m),
        (pixels[..., :2], pixels[..., 2:], pixel_mask),
        (0, 0, 0),
    ),
    "barlow_twins_loss": (losses.barlow_twins_loss, (z1, z2), (0, 0)),
    "byol_loss": (losses.byol_loss, (z1, z2), (0, 0)),
    "cholesky_whiten": (losses.cholesky_whiten, (z1,), (0,)),
    "contrastive_loss": (
        lambda a, p, n: (
            losses.contrastive_loss(a, p, n, temperature=0.2, symmetric=True),
            losses.contrastive_loss(a, p, n, temperature=0.2),
            losses.contrastive_loss(a, p, n, temperature=0.2, in_batch_negatives=False),
        ),
        (z1, z2, queue),
        (0, 0, None),
    ),
    "data2vec_targets": (
        lambda s: losses.data2vec_targets(s, layer_norm_targets=True),
        (student[:, :, None].repeat(3, axis=2),),
        (1,),
    ),
    "dcl_loss": (losses.dcl_loss, (z1, z2), (0, 0)),
    "dclw_loss": (losses.dclw_loss, (z1, z2), (0, 0)),
    "dclw_weights": (losses.dclw_weights, (z1, z2), (0, 0)),
    "dino_cross_entropy": (losses.dino_cross_entropy, (student, codes), (1, 1)),
    "epps_pulley": (losses.epps_pulley, (z1,), (0,)),
    "ibot_patch_loss": (
        losses.ibot_patch_loss,
        (patches_s, patches_t, center, patch_mask),
        (1, 1, None, 1),
    ),
    "ijepa_loss": (losses.ijepa_loss, tuple(blocks), (0, 0)),
    "koleo_loss": (losses.koleo_loss, (z1,), (0,)),
    "lejepa_loss": (
        functools.partial(losses.lejepa_loss, num_slices=8),
        (teacher, student, key),
        (1, 1, None),
    ),
    "masked_lm_loss": (losses.masked_lm_loss, (pixels[:, 0], tokens, token_weights), (0, 0, 0)),
    "masked_patch_cross_entropy": (
        losses.masked_patch_cross_entropy,
        (patches_s, patch_probs, patch_mask),
        (1, 1, 1),
    ),
    "msn_loss": (losses.msn_loss, (np.concatenate([z1, z2]), z2, queue), (0, 0, None)),
    "replaced_token_detection_loss": (
        losses.replaced_token_detection_loss,
        (pixels[:, 0, :, 0], tokens > 1, token_weights),
        (0, 0, 0),
    ),
    "sigreg": (functools.partial(losses.sigreg, num_slices=8), (z1, key), (0, None)),
    "dino_center_update": (losses.dino_center_update, (center, teacher), (None, 1)),
    "dino_loss": (
        functools.partial(losses.dino_loss, teacher_temp=0.07),
        (student, teacher, center),
        (1, 1, None),
    ),
    "embedding_cosine": (losses.embedding_cosine, (z1, z2), (0, 0)),
    "embedding_mse": (losses.embedding_mse, (z1, z2), (0, 0)),
    "info_nce": (
        functools.partial(losses.info_nce, temperature=0.2),
        (z1, z2, queue),
        (0, 0, None),
    ),
    "kd_loss": (losses.kd_loss, (z1, z2), (0, 0)),
    "l2_normalize": (losses.l2_normalize, (z1,), (0,)),
    "masked_l1": (losses.masked_l1, (pixels, 0.5 * pixels[::-1], pixel_mask), (0, 0, 0)),
    "masked_mse": (losses.masked_mse, (pixels, 0.5 * pixels[::-1], pixel_mask), (0, 0, 0)),
    "mmcr_loss": (
        lambda a, b: losses.mmcr_loss(jax.numpy.stack([a, b], axis=1), lambda_=0.1),
        (z1, z2),
        (0, 0),
    ),
    "moco_v3_ctr": (functools.partial(losses.moco_v3_ctr, temperature=0.2), (z1, z2), (0, 0)),
    "nt_xent": (losses.nt_xent, (z1, z2), (0, 0)),
    "nuclear_norm": (losses.nuclear_norm, (student.transpose(1, 0, 2),), (0,)),
    "prototype_kd_loss": (losses.prototype_kd_loss, (z1, z2, center), (0, 0, None)),
    "prototype_kd_loss_sinkhorn": (
        functools.partial(losses.prototype_kd_loss, sinkhorn_iters=3),
        (z1, z2),
        (0, 0),
    ),
    "rebalanced_cross_entropy": (
        lambda x, t, w, m: losses.rebalanced_cross_entropy(x, t, w, where=m),
        (pixels, soft_targets, np.arange(1.0, Q + 1, dtype=np.float32), pixel_mask),
        (0, 0, None, 0),
    ),
    "seed_loss": (losses.seed_loss, (z1, z2, queue), (0, 0, None)),
    "simsiam_loss": (losses.simsiam_loss, (z1, z2), (0, 0)),
    "sinkhorn_knopp": (losses.sinkhorn_knopp, (z1 / 3,), (0,)),
    "swav_codes": (
        lambda s, q: losses.swav_codes(s, queue_scores=q),
        (teacher / 3, student[:2] / 3),
        (1, 1),
    ),
    "swav_loss": (losses.swav_loss, (student, codes), (1, 1)),
    "tico_loss": (
        lambda a, b, c: losses.tico_loss(a, b, c, beta=0.9, rho=20.0),
        (z1, z2, np.eye(D, dtype=np.float32) / D),
        (0, 0, None),
    ),
    "vicreg_loss": (losses.vicreg_loss, (z1, z2), (0, 0)),
    "vicreg_terms": (losses.vicreg_terms, (z1, z2), (0, 0)),
    "wmse_loss": (
        lambda a, b: losses.wmse_loss(a, b, jax.random.key(0), w_size=8, w_iter=2),
        (z1, z2),
        (0, 0),
    ),
}
# Schedules and priors: functions of the step or of K, not of a batch.
NOT_BATCHED = {"dino_teacher_temperature", "power_law_prior"}


def test_every_public_loss_is_covered():
    assert {n.removesuffix("_sinkhorn") for n in CASES} | NOT_BATCHED == set(losses.__all__)


@functools.cache
def one_device(name):
    fn, args, _ = CASES[name]
    return jax.tree.map(np.asarray, jax.jit(fn)(*args))


@pytest.mark.parametrize("kind", MESH_KINDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_sharded_loss_equals_one_device(name, kind):
    fn, args, batch_axes = CASES[name]
    got = run_sharded(fn, args, batch_axes, kind)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6), got, one_device(name)
    )
