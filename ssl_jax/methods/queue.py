"""A FIFO queue of embeddings kept in the method state (MoCo's negatives, SEED's anchors)."""

import jax
import jax.numpy as jnp


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """FIFO push of ``keys`` ``(Q, N, D)`` into ``queue`` ``(Q, K, D)`` at row ``ptr``.

    Returns the new queue and pointer ``(ptr + N) mod K``. ``K`` must be a multiple of ``N``
    (the pointer then only takes multiples of ``N`` and a push never straddles the end).
    """
    num_queues, length, dim = queue.shape
    if keys.ndim != 3 or keys.shape[0] != num_queues or keys.shape[2] != dim:
        raise ValueError(f"enqueue expects keys (Q={num_queues}, N, D={dim}), got {keys.shape}.")
    n = keys.shape[1]
    if length % n:
        raise ValueError(
            f"The queue length {length} is not a multiple of the global batch size {n}; "
            "set method.queue_length to a multiple of data.batch_size."
        )
    ptr = jnp.asarray(ptr, jnp.int32)
    queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (0, ptr, 0))
    return queue, (ptr + n) % length
