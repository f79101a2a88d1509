"""The method protocol's rule (``ssl_jax/method.py``), checked on every method.

``update_state`` only moves state derived from the parameters (the EMA ``target``); state
that depends on a step's activations (queues, centers, batch statistics, priors) comes out of
``loss``. In the traced ``update_state`` every other leaf of the method state is returned
as it came in.
"""

import jax
import jax.numpy as jnp
import pytest

from ssl_jax.methods import METHODS, get_method
from tests.methods.test_devices import STEPS, device_configs, method_config
from tests.methods.test_dino_kd import dino_run, dino_teacher
from tests.methods.test_distill import classifier_teacher

# Fixtures of tests/methods/test_distill.py and test_dino_kd.py used here too.
__all__ = ["classifier_teacher", "dino_run", "dino_teacher"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_update_state_moves_the_target_only(name, request):
    assert name in device_configs()
    method = get_method(method_config(name, request), total_steps=STEPS)
    params, state = jax.eval_shape(method.init, jax.random.key(0))
    step = jax.ShapeDtypeStruct((), jnp.int32)
    jaxpr = jax.make_jaxpr(method.update_state)(params, state, step).jaxpr
    out = jax.eval_shape(method.update_state, params, state, step)
    assert jax.tree.structure(out) == jax.tree.structure(state)
    num_params = len(jax.tree.leaves(params))
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    state_in = jaxpr.invars[num_params : num_params + len(paths)]
    moved = {
        jax.tree_util.keystr(path)
        for path, var_in, var_out in zip(paths, state_in, jaxpr.outvars, strict=True)
        if var_out is not var_in
    }
    assert all(p.startswith("['target']") for p in moved), sorted(moved)
    if "target" in state:  # an EMA target moves with the parameters
        assert moved
