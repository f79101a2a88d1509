"""The one FIFO queue of the method state (MoCo v2, SwAV, SEED): init, push, length check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods.queue import check_queue_length, make_queue, push


def test_push_is_fifo_with_wraparound():
    state = make_queue(1, 6, 3)
    batches = [jnp.full((1, 2, 3), float(i + 1)) + jnp.arange(2.0)[:, None] / 10 for i in range(5)]
    pointers = []
    for keys in batches:
        state = push(state, keys)
        pointers.append(int(state["queue_ptr"]))
    assert pointers == [2, 4, 0, 2, 4]
    # A ring buffer: rolled to start at the pointer, it holds the last K keys oldest first.
    last = np.concatenate([b[0] for b in batches], axis=0)[-6:]
    np.testing.assert_array_equal(np.roll(state["queue"][0], -int(state["queue_ptr"]), 0), last)
    with pytest.raises(ValueError, match="multiple of the global batch size 4"):
        push(state, jnp.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match=r"push expects keys \(Q=1, N, D=3\)"):
        push(state, jnp.zeros((2, 2, 3)))


def test_push_counts_rows_and_does_nothing_where_inactive():
    state = make_queue(2, 4, 3, count=True)
    assert set(state) == {"queue", "queue_ptr", "queue_count"}
    keys = jnp.ones((2, 2, 3))
    idle = push(state, keys, active=jnp.asarray(False))
    assert all(bool(jnp.all(idle[k] == state[k])) for k in state)
    counts = []
    for _ in range(3):
        state = push(state, keys, active=jnp.asarray(True))
        counts.append(int(state["queue_count"]))
    assert counts == [2, 4, 4]  # at most K rows


def test_make_queue_starts_on_the_sphere_with_a_key_else_at_zero():
    state = make_queue(2, 8, 5, key=jax.random.key(0))
    np.testing.assert_allclose(jnp.linalg.norm(state["queue"], axis=-1), 1.0, rtol=1e-6)
    assert int(state["queue_ptr"]) == 0 and "queue_count" not in state
    np.testing.assert_array_equal(make_queue(1, 4, 2)["queue"], 0.0)


def test_a_queue_length_not_a_positive_multiple_of_the_batch_names_valid_ones():
    assert check_queue_length(64, 16, "MoCo v2") == 64
    assert check_queue_length(40, None, "MoCo v2") == 40  # checked again when pushed
    with pytest.raises(ValueError, match=r"MoCo v2: method.queue_length=40 .*=16.*48 \(or 32\)"):
        check_queue_length(40, 16, "MoCo v2")
    with pytest.raises(ValueError, match="queue_length=0 is not a positive multiple"):
        check_queue_length(0, 16, "SEED")
