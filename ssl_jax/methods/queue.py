"""FIFO queues of embeddings kept in the method state: MoCo v2's negatives, SwAV's earlier
projections, SEED's teacher anchors.

A queue is the method-state entries ``"queue"`` ``(Q, K, D)`` (``Q`` queues of ``K`` rows of
width ``D``) and ``"queue_ptr"`` (the next row to write), plus ``"queue_count"`` (rows filled,
at most ``K``) for a queue that starts empty. Under global-view ``jax.jit`` a push takes the
embeddings of the whole global batch, so the queue is one array, the same on every device
(the authors' ``concat_all_gather``). ``K`` must be a multiple of the global batch ``N``: the
pointer then only takes multiples of ``N`` and a push never straddles the end. The push
depends on the step's activations, so it happens in ``loss`` (:mod:`ssl_jax.method`).
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import l2_normalize


def check_queue_length(queue_length: int, batch_size: int | None, method: str) -> int:
    """``queue_length`` when it is a positive multiple of the global ``batch_size`` (when
    known), else a ``ValueError`` naming the nearest valid lengths."""
    queue_length = int(queue_length)
    if queue_length > 0 and not (batch_size and queue_length % batch_size):
        return queue_length
    batch = batch_size or 1
    up = max(1, -(-queue_length // batch)) * batch
    down = max(1, queue_length // batch) * batch
    raise ValueError(
        f"{method}: method.queue_length={queue_length} is not a positive multiple of "
        f"data.batch_size={batch_size}: each step pushes the whole global batch into the "
        f"queue, FIFO. Use e.g. {up} (or {down})."
    )


def make_queue(
    num_queues: int, length: int, dim: int, *, key: jax.Array | None = None, count: bool = False
) -> dict:
    """A queue's method-state entries ``{"queue", "queue_ptr"[, "queue_count"]}``.

    With ``key``: rows of ``jax.random.normal`` L2-normalised, random points on the sphere
    (MoCo's and SEED's initialisation, usable as negatives from the first step); else zeros
    (float32), with ``count=True`` to know when it is full (SwAV's).
    """
    shape = (num_queues, length, dim)
    queue = (
        jnp.zeros(shape, jnp.float32)
        if key is None
        else l2_normalize(jax.random.normal(key, shape))
    )
    state = {"queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}
    if count:
        state["queue_count"] = jnp.zeros((), jnp.int32)
    return state


def push(queue_state: dict, keys: jax.Array, *, active: jax.Array | None = None) -> dict:
    """FIFO push of ``keys`` ``(Q, N, D)`` into ``queue_state["queue"]`` ``(Q, K, D)`` at row
    ``queue_state["queue_ptr"]``.

    Returns the new entries: the queue, the pointer ``(ptr + N) mod K`` and, where the state
    has one, ``queue_count`` ``min(count + N, K)``. Where ``active`` (a traced bool) is false
    every entry is returned unchanged (SwAV's queue starts at ``queue_start_step``). ``K`` must
    be a multiple of ``N``: a ``ValueError`` at trace time otherwise.
    """
    queue = queue_state["queue"]
    num_queues, length, dim = queue.shape
    if keys.ndim != 3 or keys.shape[0] != num_queues or keys.shape[2] != dim:
        raise ValueError(f"push expects keys (Q={num_queues}, N, D={dim}), got {keys.shape}.")
    n = keys.shape[1]
    if length % n:
        raise ValueError(
            f"The queue length {length} is not a multiple of the global batch size {n}; "
            "set method.queue_length to a multiple of data.batch_size."
        )
    ptr = jnp.asarray(queue_state["queue_ptr"], jnp.int32)
    new = {
        "queue": jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (0, ptr, 0)),
        "queue_ptr": (ptr + n) % length,
    }
    if "queue_count" in queue_state:
        new["queue_count"] = jnp.minimum(queue_state["queue_count"] + n, length)
    if active is None:
        return new
    return {name: jnp.where(active, value, queue_state[name]) for name, value in new.items()}
