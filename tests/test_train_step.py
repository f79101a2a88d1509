"""The shared train step with a toy method: the update, metrics and ``project_params``."""

import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.methods.base import Method, no_state_update
from ssl_jax.parallel import make_mesh
from ssl_jax.train_step import make_init_fn, make_train_step


def toy_method(project_params=None) -> Method:
    """Params ``w`` (2,), loss ``sum((w - mean image value)^2)``."""

    def loss(params, method_state, batch, key):
        del key
        target = jnp.mean(batch["images"].astype(jnp.float32))
        return jnp.sum((params["w"] - target) ** 2), (method_state, {})

    return Method(
        name="toy",
        init=lambda key, sample_batch=None: ({"w": jnp.array([3.0, 4.0])}, {}),
        loss=loss,
        update_state=no_state_update,
        export=lambda params, state: params,
        backbone=None,
        project_params=project_params,
    )


def test_one_step_is_sgd_and_project_params_follows_the_update():
    mesh = make_mesh(8)
    schedule = optax.constant_schedule(0.1)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    plain = toy_method()
    state = make_init_fn(plain, optax.sgd(schedule), mesh)(0)
    state, metrics = make_train_step(plain, optax.sgd(schedule), schedule, mesh)(state, batch)
    expected = np.array([3.0, 4.0]) - 0.1 * 2 * (np.array([3.0, 4.0]) - 1.0)  # [2.6, 3.4]
    np.testing.assert_allclose(state.params["w"], expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], 4.0 + 9.0, rtol=1e-6)
    assert int(state.step) == 1

    unit = toy_method(lambda p: {"w": p["w"] / jnp.linalg.norm(p["w"])})
    state = make_init_fn(unit, optax.sgd(schedule), mesh)(0)
    state, _ = make_train_step(unit, optax.sgd(schedule), schedule, mesh)(state, batch)
    np.testing.assert_allclose(state.params["w"], expected / np.linalg.norm(expected), rtol=1e-6)
