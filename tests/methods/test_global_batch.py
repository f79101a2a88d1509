"""BatchNorm statistics and negatives span the global batch, not each device's share.

The 1- vs 8-device trajectory tests (test_devices.py) show that sharding changes nothing,
but they would pass for an implementation that is per-device on both counts if it were
per-device the same way on one device. Here SimCLR's loss on 8 devices is compared with
three computations on one device from the same views: global BN and global negatives (what
the method must equal), per-device BN (each device normalising its own 2 images x 2 views),
and per-device negatives (each device contrasting only its own images). Both per-device
variants give clearly different losses, so equality with the first is evidence.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.losses import nt_xent
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from ssl_jax.parallel import batch_sharded, make_mesh, replicated
from tests.programs.tiny import tiny_pretrain_config

DEVICES = 8


@pytest.fixture(scope="module")
def simclr():
    config = tiny_pretrain_config()
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, config.method.proj_hidden_dim, config.method.proj_dim
        ),
    }
    return config, method, jnp.asarray(images), params, state, parts


@pytest.mark.slow  # an 8-device step to compile (about 12 s)
def test_simclr_bn_and_negatives_are_global_on_eight_devices(simclr):
    config, method, images, params, state, parts = simclr
    key = jax.random.key(5)
    temperature = config.method.temperature
    mesh = make_mesh(DEVICES)
    sharded_loss = jax.jit(
        lambda p, s, b, k: method.loss(p, s, b, k, 0, None)[0],
        in_shardings=(replicated(mesh), replicated(mesh), batch_sharded(mesh), replicated(mesh)),
    )
    batch = jax.device_put({"images": images}, batch_sharded(mesh))
    on_eight = float(sharded_loss(params, state, batch, key))

    @jax.jit
    def references(params, stats, images):
        v1, v2 = make_views(config.augment, config.method.name)(images, key)
        names = ("backbone", "projector")
        (z1, z2), _ = embed_views(parts, names, params, stats, (v1, v2))
        global_loss = nt_xent(z1, z2, temperature=temperature)
        # Per-device BN: each device's views embedded alone, negatives still global.
        chunks = [
            embed_views(parts, names, params, stats, (a, b))[0]
            for a, b in zip(jnp.split(v1, DEVICES), jnp.split(v2, DEVICES), strict=True)
        ]
        local_bn = nt_xent(
            jnp.concatenate([c[0] for c in chunks]),
            jnp.concatenate([c[1] for c in chunks]),
            temperature=temperature,
        )
        # Per-device negatives: global BN, each device contrasting only its own pairs.
        local_negatives = jnp.mean(
            jnp.stack(
                [
                    nt_xent(a, b, temperature=temperature)
                    for a, b in zip(jnp.split(z1, DEVICES), jnp.split(z2, DEVICES), strict=True)
                ]
            )
        )
        return global_loss, local_bn, local_negatives

    global_loss, local_bn, local_negatives = map(
        float, references(params, state["batch_stats"], images)
    )
    np.testing.assert_allclose(on_eight, global_loss, rtol=2e-5)
    assert abs(local_bn - global_loss) > 1e-2, (local_bn, global_loss)
    assert abs(local_negatives - global_loss) > 1e-1, (local_negatives, global_loss)
