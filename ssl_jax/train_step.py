"""Training state and the sharded, jitted train step shared by every method."""

from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from ssl_jax import liveness
from ssl_jax.accumulation import accumulate
from ssl_jax.parallel import batch_sharded, replicated
from ssl_jax.sharding import DEFAULT_MIN_SIZE, batch_sharded_activations, state_shardings

if TYPE_CHECKING:  # Only a type: the fine-tuning program uses this step without the methods.
    from ssl_jax.method import Method


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: a plain pytree for jit and Orbax.

    ``rng`` holds raw key data (``jax.random.key_data``) so checkpoints store plain
    uint32 arrays; the step key is ``fold_in(wrap_key_data(rng), step)``.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    method_state: Any
    rng: jax.Array


def _strongly_typed(x):
    """``x`` without JAX's weak type: a weakly typed initial leaf (``jnp.full(n, 0.5)``) turns
    strongly typed at the first update, which changes the step's input types and compiles the
    step a second time."""
    return x.astype(x.dtype) if getattr(x, "weak_type", False) else x


def _init_state(method: "Method", tx: optax.GradientTransformation, seed: int) -> TrainState:
    root = jax.random.key(seed)
    init_key, step_key = jax.random.split(root)
    params, method_state = jax.tree.map(_strongly_typed, method.init(init_key))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        method_state=method_state,
        rng=jax.random.key_data(step_key),
    )


def state_sharding(
    method: "Method",
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    fsdp: bool = False,
    min_size: int = DEFAULT_MIN_SIZE,
) -> TrainState:
    """The ``NamedSharding`` of every leaf of the training state: replicated, or split over
    the data axis with ``fsdp`` (:mod:`ssl_jax.sharding`; ``mesh.fsdp`` in the config)."""
    abstract = jax.eval_shape(lambda: _init_state(method, tx, 0))
    return state_shardings(abstract, mesh, fsdp=fsdp, min_size=min_size)


def make_init_fn(
    method: "Method", tx: optax.GradientTransformation, mesh: Mesh, sharding: Any = None
):
    """``init(seed) -> TrainState`` created directly with ``sharding`` (from
    :func:`state_sharding`; default replicated); no leaf of the state is weakly typed, so the
    train step compiles once."""
    out = replicated(mesh) if sharding is None else sharding
    return jax.jit(lambda seed: _init_state(method, tx, seed), static_argnums=0, out_shardings=out)


def all_finite(tree) -> jax.Array:
    """True when every leaf of ``tree`` is free of NaN and inf."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_train_step(
    method: "Method",
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh: Mesh,
    sharding: Any = None,
    *,
    accumulation_steps: int = 1,
):
    """``train_step(state, batch, frozen=None) -> (state, metrics)``, jitted over ``mesh``.

    State is laid out as ``sharding`` (from :func:`state_sharding`; default replicated) and
    donated, the batch is split over the ``data`` axis, ``frozen``
    (the method's frozen inputs, e.g. a teacher's export) is replicated and *not* donated:
    the same arrays serve every step. Gradients of the loss (a mean over the global batch)
    are already global: no ``pmean``. ``accumulation_steps`` > 1 computes the gradient over
    that many micro-batches of the batch in turn (:mod:`ssl_jax.accumulation`; check the
    method with :func:`ssl_jax.accumulation.check` first). When ``sharding`` splits any
    leaf (FSDP), the models' activations are kept split over the batch
    (:func:`ssl_jax.sharding.batch_sharded_activations`).
    """
    split = sharding is not None and not all(
        s.is_fully_replicated for s in jax.tree.leaves(sharding)
    )
    activations_mesh = mesh if split else None

    def train_step(state: TrainState, batch: dict, frozen: Any) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grad_fn = jax.value_and_grad(method.loss, has_aux=True)
        inputs = (state.params, state.method_state, batch, key, state.step, frozen)
        with batch_sharded_activations(activations_mesh):
            if accumulation_steps == 1:
                (loss, (method_state, metrics)), grads = grad_fn(*inputs)
            else:  # micro-batches one after the other (ssl_jax.accumulation)
                (loss, (method_state, metrics)), grads = accumulate(
                    grad_fn, accumulation_steps, mesh, *inputs
                )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if method.project_params is not None:
            params = method.project_params(params)
        method_state = method.update_state(params, method_state, state.step)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state.step),
            "params_finite": all_finite(params),
        }
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, method_state=method_state
        )
        return new_state, metrics

    state_out = replicated(mesh) if sharding is None else sharding
    step = jax.jit(
        train_step,
        in_shardings=(state_out, batch_sharded(mesh), replicated(mesh)),
        out_shardings=(state_out, replicated(mesh)),
        donate_argnums=0,
    )

    compiled = False

    def run(state: TrainState, batch: dict, frozen: Any = None) -> tuple[TrainState, dict]:
        nonlocal compiled
        if not compiled:  # several processes start their first step together
            liveness.compile_together(step, state, batch, frozen)
            compiled = True
        return step(state, batch, frozen)

    # Programs compiled so far (one per input signature: more than one after the first step
    # means a recompilation); None where this JAX version does not say.
    run.compilations = getattr(step, "_cache_size", lambda: None)
    # Ahead-of-time: ``run.lower(state, batch).compile()`` (compile time, cost analysis).
    run.lower = lambda state, batch, frozen=None: step.lower(state, batch, frozen)
    return run
