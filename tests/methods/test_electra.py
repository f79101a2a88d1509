"""ELECTRA: the loss is generator MLM + 50 x replaced-token detection, no gradient from the
discriminator into the generator, one step lowers the loss (slow: one compiled gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import get_source
from ssl_jax.data.loader import make_batch
from ssl_jax.methods import get_method
from tests.methods.test_mlm import MLM
from tests.programs.tiny import tiny_pretrain_config

ELECTRA = {**MLM, "method.name": "electra", "method.generator_divisor": 2}
# tests/methods/test_devices.py runs this on 1 and 8 devices.
DEVICE_CONFIGS = {"electra": {k: v for k, v in ELECTRA.items() if k != "method.name"}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The method, a batch, its params and ``terms(params) -> (d [generator_loss,
    discriminator_loss] / d params, (loss, metrics))``, jitted once for every test."""
    config = tiny_pretrain_config(**ELECTRA)
    method = get_method(config)
    source = get_source(config.data, "train", workdir=tmp_path_factory.mktemp("run"))
    batch = jax.tree.map(jnp.asarray, make_batch(source, np.arange(16)))
    params, state = jax.jit(method.init)(jax.random.key(0))
    key = jax.random.key(2)

    def both(p):
        value, (_, metrics) = method.loss(p, state, batch, key, 0, None)
        pair = jnp.stack([metrics["generator_loss"], metrics["discriminator_loss"]])
        return pair, (value, metrics)

    terms = jax.jit(jax.jacrev(both, has_aux=True))
    return method, state, params, terms


@pytest.mark.slow  # the fixture compiles ELECTRA's two-term gradient (about 10 s)
def test_the_discriminator_term_gives_the_generator_no_gradient(setup):
    _, _, params, terms = setup
    grads, (value, metrics) = terms(params)
    np.testing.assert_allclose(
        value, metrics["generator_loss"] + 50.0 * metrics["discriminator_loss"], rtol=1e-6
    )
    # At most the masked round(0.3 R) of R real tokens (R >= 5 here: <= 0.3 + 0.5 / 5).
    assert 0 < float(metrics["replaced_fraction"]) <= 0.4
    generator_term = jax.tree.map(lambda g: g[0], grads)
    discriminator_term = jax.tree.map(lambda g: g[1], grads)
    for part in ("generator", "generator_head"):  # the sample is a stop-gradient
        assert all(not np.any(g) for g in jax.tree.leaves(discriminator_term[part])), part
        assert any(np.any(g) for g in jax.tree.leaves(generator_term[part])), part
    assert any(np.any(g) for g in jax.tree.leaves(discriminator_term["backbone"]))
    assert all(not np.any(g) for g in jax.tree.leaves(generator_term["backbone"]))


@pytest.mark.slow  # shares that compile
def test_one_step_lowers_the_loss(setup):
    method, state, params, terms = setup
    grads, (before, _) = terms(params)
    total = jax.tree.map(lambda g: g[0] + 50.0 * g[1], grads)
    tx = optax.adam(1e-2)
    updates, _ = tx.update(total, tx.init(params), params)
    _, (after, _) = terms(optax.apply_updates(params, updates))
    assert float(after) < float(before)
    assert method.export(params, state)["params"] is params["backbone"]


def test_bad_generator_sizes_are_errors():
    with pytest.raises(ValueError, match="generator_divisor=3 must divide the width 16"):
        get_method(tiny_pretrain_config(**{**ELECTRA, "method.generator_divisor": 3}))
    with pytest.raises(ValueError, match="rtd_weight"):
        get_method(tiny_pretrain_config(**{**ELECTRA, "method.rtd_weight": 0.0}))
