"""The shared train step with a toy method: the update, metrics, step key, ``project_params``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.method import Method, no_state_update
from ssl_jax.parallel import make_mesh
from ssl_jax.train_step import all_finite, make_init_fn, make_train_step


def toy_method(project_params=None) -> Method:
    """Params ``w`` (2,), loss ``sum((w - mean image value)^2)``."""

    def loss(params, method_state, batch, key, step, frozen):
        del key, step, frozen
        target = jnp.mean(batch["images"].astype(jnp.float32))
        return jnp.sum((params["w"] - target) ** 2), (method_state, {})

    return Method(
        name="toy",
        init=lambda key: ({"w": jnp.array([3.0, 4.0])}, {}),
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


def test_grad_norm_is_the_global_norm_of_the_gradient():
    """Two leaves: the loss ``sum((w - m)^2) + sum((v - m)^2)`` has gradient ``2 (x - m)``."""

    def loss(params, method_state, batch, key, step, frozen):
        del key, step, frozen
        m = jnp.mean(batch["images"].astype(jnp.float32))
        value = jnp.sum((params["w"] - m) ** 2) + jnp.sum((params["v"] - m) ** 2)
        return value, (method_state, {})

    method = toy_method()._replace(
        init=lambda key: (
            {"w": jnp.array([3.0, 4.0]), "v": jnp.array([[0.0], [-2.0]])},
            {},
        ),
        loss=loss,
    )
    mesh = make_mesh(8)
    schedule = optax.constant_schedule(0.1)
    tx = optax.sgd(schedule)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    state = make_init_fn(method, tx, mesh)(0)
    _, metrics = make_train_step(method, tx, schedule, mesh)(state, batch)
    grads = np.concatenate([2 * (np.array([3.0, 4.0]) - 1), 2 * (np.array([0.0, -2.0]) - 1)])
    expected = np.sqrt(np.sum(grads**2))  # sqrt(16 + 36 + 4 + 36) = sqrt(92)
    # Not the update's norm (0.1 x this) nor one leaf's (sqrt(52) or sqrt(40)).
    np.testing.assert_allclose(metrics["grad_norm"], expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["learning_rate"], 0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_params_finite_checks_the_parameters_after_the_update_and_projection(bad):
    """A ``project_params`` that writes ``bad`` into one entry: loss and gradient are finite,
    only the new parameters are not."""
    mesh = make_mesh(8)
    schedule = optax.constant_schedule(0.1)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    for project, finite in [(None, True), (lambda p: {"w": p["w"].at[1].set(bad)}, False)]:
        method = toy_method(project)
        state = make_init_fn(method, optax.sgd(schedule), mesh)(0)
        _, metrics = make_train_step(method, optax.sgd(schedule), schedule, mesh)(state, batch)
        assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
        new_params = f"w[1] = {bad}" if project else "all finite"
        assert bool(metrics["params_finite"]) is finite, (
            f"params_finite={bool(metrics['params_finite'])} for new params with {new_params}"
        )


def test_all_finite_looks_at_every_leaf():
    tree = {"a": jnp.ones((3,)), "b": {"c": jnp.arange(4), "d": jnp.zeros((2, 2))}}
    assert bool(all_finite(tree))
    for path in (("a",), ("b", "d")):
        for bad in (np.nan, np.inf):
            broken = jax.tree.map(lambda x: x, tree)
            leaf = broken
            for key in path[:-1]:
                leaf = leaf[key]
            leaf[path[-1]] = leaf[path[-1]].at[(0,) * leaf[path[-1]].ndim].set(bad)
            assert not bool(all_finite(broken)), f"all_finite misses {bad} in leaf {path}"


def key_method() -> Method:
    """The loss returns the raw data of the key it receives as a metric."""

    def loss(params, method_state, batch, key, step, frozen):
        del batch, step, frozen
        return jnp.sum(params["w"] ** 2), (method_state, {"key": jax.random.key_data(key)})

    return toy_method()._replace(loss=loss)


def test_the_step_key_is_the_state_key_folded_with_the_step():
    mesh = make_mesh(8)
    schedule = optax.constant_schedule(0.1)
    tx = optax.sgd(schedule)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    method = key_method()
    init, step = make_init_fn(method, tx, mesh), make_train_step(method, tx, schedule, mesh)
    rng = np.asarray(init(0).rng)

    def expected(n):
        return np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(rng), n)))

    state = init(0)
    seen = []
    for n in range(3):
        state, metrics = step(state, batch)
        seen.append(np.asarray(metrics["key"]))
        np.testing.assert_array_equal(
            seen[-1], expected(n), err_msg=f"step {n}'s key is not fold_in(wrap_key_data(rng), {n})"
        )
    np.testing.assert_array_equal(np.asarray(state.rng), rng)  # the stored key never changes
    assert len({k.tobytes() for k in seen}) == 3, f"steps 0, 1, 2 share a key: {seen}"

    # Same params, method state and batch; only ``step`` differs: different keys.
    keys = []
    for n in (0, 7):
        _, metrics = step(init(0).replace(step=jnp.asarray(n, jnp.int32)), batch)
        keys.append(np.asarray(metrics["key"]))
    assert keys[0].tobytes() != keys[1].tobytes(), "the key does not depend on state.step"
    np.testing.assert_array_equal(keys[1], expected(7))


def test_the_loss_gets_the_global_step_and_the_frozen_inputs_which_are_not_donated():
    """``step`` is the state's step; ``frozen`` arrives as given and stays alive (the train
    state is donated, the frozen inputs serve every step)."""

    def loss(params, method_state, batch, key, step, frozen):
        del batch, key
        value = jnp.sum((params["w"] - frozen["anchor"]) ** 2)
        # A (2,) float32 output the frozen buffer could be aliased to if it were donated
        # (JAX ignores a donation that no output can use, so the check needs one).
        metrics = {"seen_step": step, "anchor_sum": jnp.sum(frozen["anchor"])}
        return value, (method_state, {**metrics, "anchor_copy": frozen["anchor"] * 2.0})

    method = toy_method()._replace(loss=loss)
    mesh = make_mesh(8)
    schedule = optax.constant_schedule(0.1)
    tx = optax.sgd(schedule)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    frozen = {"anchor": jnp.array([1.0, 2.0])}
    state = make_init_fn(method, tx, mesh)(0)
    step = make_train_step(method, tx, schedule, mesh)
    for expected in range(3):
        old = state
        state, metrics = step(state, batch, frozen)
        assert int(metrics["seen_step"]) == expected
        np.testing.assert_allclose(metrics["anchor_sum"], 3.0)
        assert old.params["w"].is_deleted() and not frozen["anchor"].is_deleted()
    w = np.array([3.0, 4.0])
    for _ in range(3):
        w = w - 0.1 * 2 * (w - np.array([1.0, 2.0]))
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-6)


def test_a_weakly_typed_initial_state_does_not_compile_the_step_twice():
    """``jnp.full(n, 0.5)`` is weakly typed; its first update is not. The initial state is made
    strongly typed, so the step's input types stay the same (colorization's ab prior did
    compile twice before)."""
    base = toy_method()

    def loss(params, method_state, batch, key, step, frozen):
        value, (_, metrics) = base.loss(params, method_state, batch, key, step, frozen)
        return value, ({"running": method_state["running"] + jnp.float32(1.0)}, metrics)

    method = base._replace(
        init=lambda key: ({"w": jnp.array([3.0, 4.0])}, {"running": jnp.full((2,), 0.5)}),
        loss=loss,
    )
    mesh = make_mesh(8)
    tx = optax.sgd(0.1)
    state = make_init_fn(method, tx, mesh)(0)
    assert not state.method_state["running"].weak_type
    step = make_train_step(method, tx, optax.constant_schedule(0.1), mesh)
    batch = {"images": jnp.ones((8, 2, 2, 3), jnp.uint8)}
    for _ in range(3):
        state, _ = step(state, batch)
    np.testing.assert_allclose(state.method_state["running"], [3.5, 3.5])
    assert step.compilations() == 1
