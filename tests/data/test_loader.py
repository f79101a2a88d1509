"""BatchIterator (training order, processes, resume) and iterate_eval."""

import json

import numpy as np
import pytest

from ssl_jax.data import ArraySource, BatchIterator, DataError, iterate_eval


def indexed_source(n):
    """Label i and pixel value i % 256 for example i, so a batch tells which examples it holds."""
    images = np.broadcast_to(
        (np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, 2, 3, 3)
    )
    return ArraySource(np.ascontiguousarray(images), np.arange(n), num_classes=n)


SOURCE = indexed_source(103)


def make(**kw):
    kw = {"global_batch_size": 10, "seed": 42, **kw}
    return BatchIterator(SOURCE, **kw)


def test_batch_shapes_dtypes_and_content():
    it = make(process_count=2, process_index=1)
    batch = it.batch_at(3)
    assert it.steps_per_epoch == 10 and it.local_batch_size == 5
    assert batch["images"].shape == (5, 2, 3, 3) and batch["images"].dtype == np.uint8
    assert batch["labels"].shape == (5,) and batch["labels"].dtype == np.int32
    np.testing.assert_array_equal(batch["images"][:, 1, 2, 0], batch["labels"])


def test_order_follows_the_documented_permutation():
    it = make()
    for step in (0, 9, 10, 23):
        epoch, within = divmod(step, 10)
        perm = np.random.default_rng([42, epoch]).permutation(103)
        np.testing.assert_array_equal(it.batch_at(step)["labels"], perm[within * 10 :][:10])


def test_deterministic_and_independent_of_call_order():
    a, b = make(), make()
    steps = [25, 3, 25, 0, 11, 3, 57]
    got_a = [a.batch_at(s)["labels"] for s in steps]
    got_b = [b.batch_at(s)["labels"] for s in sorted(set(steps))]
    lookup = dict(zip(sorted(set(steps)), got_b, strict=True))
    for s, labels in zip(steps, got_a, strict=True):
        np.testing.assert_array_equal(labels, lookup[s])
    assert not np.array_equal(make(seed=43).batch_at(0)["labels"], a.batch_at(0)["labels"])


def test_each_epoch_visits_distinct_examples_and_epochs_differ():
    it = make()
    epochs = []
    for epoch in range(3):
        labels = np.concatenate([it.batch_at(epoch * 10 + s)["labels"] for s in range(10)])
        assert len(np.unique(labels)) == len(labels) == 100
        assert labels.min() >= 0 and labels.max() < 103
        epochs.append(labels)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_without_shuffle_every_epoch_is_in_source_order():
    it = make(shuffle=False)
    np.testing.assert_array_equal(it.batch_at(1)["labels"], np.arange(10, 20))
    np.testing.assert_array_equal(it.batch_at(11)["labels"], np.arange(10, 20))


@pytest.mark.parametrize("process_count", [2, 5])
def test_process_blocks_concatenate_to_the_single_process_batch(process_count):
    single = make()
    parts = [make(process_index=p, process_count=process_count) for p in range(process_count)]
    for step in (0, 7, 13, 31):
        joined = np.concatenate([p.batch_at(step)["labels"] for p in parts])
        np.testing.assert_array_equal(joined, single.batch_at(step)["labels"])
        assert len(parts[0].batch_at(step)["labels"]) == 10 // process_count


def test_bad_batch_and_process_arguments():
    with pytest.raises(DataError, match=r"103 examples, fewer than one global batch of 128"):
        make(global_batch_size=128)
    with pytest.raises(DataError, match=r"batch size 10 is not a positive multiple of .* 3"):
        make(process_count=3)
    with pytest.raises(DataError, match=r"process_index=2, process_count=2"):
        make(process_index=2, process_count=2)


def test_state_is_json_and_resumes_the_same_batches():
    it = make()
    state = json.loads(json.dumps(it.get_state(37)))
    assert state["step"] == 37 and state["epoch"] == 3 and state["step_in_epoch"] == 7
    resumed = make(process_count=2)  # The process count may change between runs.
    start = resumed.step_from_state(state)
    assert start == 37
    batches = resumed.iterate(start)
    for _ in range(3):
        step, batch = next(batches)
        np.testing.assert_array_equal(batch["labels"], it.batch_at(step)["labels"][:5])
    assert step == 39
    batches.close()


@pytest.mark.parametrize("field, value", [("seed", 7), ("global_batch_size", 20)])
def test_state_from_a_different_order_is_rejected(field, value):
    state = make(**{field: value}).get_state(5)
    with pytest.raises(DataError, match=f"saved {field}={value}"):
        make().step_from_state(state)


@pytest.mark.parametrize("prefetch_size", [0, 1, 3])
def test_iterate_yields_batch_at_each_step(prefetch_size):
    it = make()
    batches = it.iterate(8, prefetch_size=prefetch_size)
    for expected_step in range(8, 30):
        step, batch = next(batches)
        assert step == expected_step
        np.testing.assert_array_equal(batch["labels"], it.batch_at(step)["labels"])
        np.testing.assert_array_equal(batch["images"], it.batch_at(step)["images"])
    batches.close()


def eval_batches(source, batch_size, process_count):
    per_process = [
        list(
            iterate_eval(
                source, batch_size=batch_size, process_index=p, process_count=process_count
            )
        )
        for p in range(process_count)
    ]
    lengths = {len(batches) for batches in per_process}
    assert len(lengths) == 1, f"processes yield different numbers of batches: {lengths}"
    return per_process


@pytest.mark.parametrize(
    "n, batch_size, process_count", [(23, 8, 1), (23, 8, 2), (17, 8, 4), (16, 8, 2), (5, 8, 1)]
)
def test_iterate_eval_covers_every_example_once_in_order(n, batch_size, process_count):
    source = indexed_source(n)
    per_process = eval_batches(source, batch_size, process_count)
    assert len(per_process[0]) == -(-n // batch_size)
    local = batch_size // process_count
    labels, masks = [], []
    for step in range(len(per_process[0])):
        for batches in per_process:
            batch = batches[step]
            assert batch["images"].shape == (local, 2, 3, 3) and batch["mask"].dtype == bool
            np.testing.assert_array_equal(batch["images"][:, 0, 0, 0], batch["labels"])
            labels.append(batch["labels"])
            masks.append(batch["mask"])
    labels, masks = np.concatenate(labels), np.concatenate(masks)
    np.testing.assert_array_equal(labels[masks], np.arange(n))
    np.testing.assert_array_equal(masks, np.arange(len(masks)) < n)
    assert np.all(labels[~masks] == 0)


def test_iterate_eval_rejects_indivisible_batch():
    with pytest.raises(DataError, match="multiple of the process count 3"):
        next(iterate_eval(SOURCE, batch_size=8, process_count=3))
