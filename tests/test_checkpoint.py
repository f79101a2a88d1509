import gc
import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import checkpoint
from ssl_jax.checkpoint import (
    BEST_DIR,
    BestCheckpoint,
    Checkpointer,
    CheckpointError,
    first_difference,
    read_config,
    read_encoder_spec,
    resolve_step,
    restore_encoder,
)
from ssl_jax.parallel import make_mesh

# Orbax leaves un-awaited read coroutines behind when a restore fails.
quiet_orbax_errors = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


CONFIG = {"model": {"backbone": "resnet18", "width": 8}, "optim": {"name": "lars"}}
SPEC = {"format": 1, "method": "simclr"}  # checkpoint.py stores the spec; encoder.py checks it


def make_params(scale=1.0):
    rng = np.random.default_rng(0)
    return {
        "dense": {
            "kernel": jnp.asarray(scale * rng.normal(size=(8, 4)), jnp.float32),
            "bias": jnp.asarray(scale * rng.normal(size=(4,)), jnp.float32),
        },
        "bn": {"scale": jnp.asarray(scale * rng.normal(size=(4,)), jnp.bfloat16)},
    }


def make_state(scale=1.0):
    """A TrainState-like tree: params, a non-trivial optax state, a step and an int buffer."""
    params = make_params(scale)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params)  # non-zero moments, count=1
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.asarray(7 * scale, jnp.int32),
        "queue_ptr": jnp.arange(3, dtype=jnp.int32),
    }


def make_encoder(scale=1.0):
    return {"params": make_params(scale), "batch_stats": {"mean": jnp.full((4,), float(scale))}}


def abstract(tree, sharding=None):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def assert_trees_equal(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))


@pytest.fixture
def checkpointers():
    opened = []

    def make(run_dir, **kw):
        kw = {"every_steps": 1, "keep": 5, "async_save": False, **kw}
        ckpt = Checkpointer(str(run_dir), **kw)
        opened.append(ckpt)
        return ckpt

    yield make
    for ckpt in opened:
        ckpt.close()


def save_steps(ckpt, steps):
    for step in steps:
        assert ckpt.save(
            step,
            state=make_state(step),
            encoder=make_encoder(step),
            encoder_spec={**SPEC, "step": step},
            config={**CONFIG, "step": step},
            data={"epoch": step},
        )


@pytest.mark.parametrize("kw", [{"every_steps": 0}, {"keep": 0}])
def test_bad_arguments(tmp_path, kw):
    with pytest.raises(ValueError, match="must be positive"):
        Checkpointer(str(tmp_path), **{"every_steps": 1, "keep": 1, **kw})


def test_round_trip_keeps_values_dtypes_and_structure(tmp_path, checkpointers):
    ckpt = checkpointers(tmp_path)
    save_steps(ckpt, [3])
    assert ckpt.latest_step() == 3
    state, data = checkpointers(tmp_path).restore(3, abstract(make_state()))
    assert_trees_equal(state, make_state(3))
    assert state["params"]["bn"]["scale"].dtype == jnp.bfloat16
    assert isinstance(state["opt_state"][1][0], optax.ScaleByAdamState)
    assert data == {"epoch": 3}


def test_restore_onto_shardings(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [1])
    mesh = make_mesh(-1)
    target = abstract(make_state(), NamedSharding(mesh, P()))
    batch_spec = NamedSharding(mesh, P("data"))
    kernel = target["params"]["dense"]["kernel"]
    target["params"]["dense"]["kernel"] = jax.ShapeDtypeStruct(
        kernel.shape, kernel.dtype, sharding=batch_spec
    )
    state, _ = checkpointers(tmp_path).restore(1, target)
    assert_trees_equal(state, make_state(1))
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(target), strict=True):
        assert got.sharding == want.sharding
    assert len(state["step"].sharding.device_set) == 8

    encoder, step = restore_encoder(
        str(tmp_path), abstract(make_encoder(), NamedSharding(mesh, P()))
    )
    assert step == 1
    assert all(x.sharding == NamedSharding(mesh, P()) for x in jax.tree.leaves(encoder))


def test_read_config_restore_encoder_and_resolve_step(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [2, 4])
    run = str(tmp_path)
    assert resolve_step(run) == 4
    assert resolve_step(run, 2) == 2
    assert read_config(run) == {**CONFIG, "step": 4}
    assert read_config(run, 2) == {**CONFIG, "step": 2}
    assert read_encoder_spec(run, 2) == {**SPEC, "step": 2}
    encoder, step = restore_encoder(run, abstract(make_encoder()))
    assert step == 4
    assert_trees_equal(encoder, make_encoder(4))
    encoder, step = restore_encoder(run, abstract(make_encoder()), step=2)
    assert step == 2
    assert_trees_equal(encoder, make_encoder(2))


def test_missing_step_lists_found_steps(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [2, 4])
    with pytest.raises(CheckpointError, match=r"Step 3 is not in .*found \[2, 4\]"):
        resolve_step(str(tmp_path), 3)
    with pytest.raises(CheckpointError, match=r"found \[2, 4\]"):
        restore_encoder(str(tmp_path), abstract(make_encoder()), step=3)


def test_empty_dir_has_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint"):
        resolve_step(str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="No checkpoint"):
        read_config(str(tmp_path))
    with pytest.raises(CheckpointError, match="No checkpoint"):
        restore_encoder(str(tmp_path), abstract(make_encoder()))


def test_keeps_newest_n(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path, keep=2), [1, 2, 3, 4])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]
    assert resolve_step(str(tmp_path), 3) == 3


def test_saves_follow_every_steps_unless_forced(tmp_path, checkpointers):
    ckpt = checkpointers(tmp_path, every_steps=3)
    state, enc = make_state(), make_encoder()
    items = dict(state=state, encoder=enc, encoder_spec=SPEC, config=CONFIG, data={})
    assert not ckpt.save(2, **items)
    assert ckpt.latest_step() is None
    assert ckpt.save(3, **items)
    assert not ckpt.save(4, **items)
    assert ckpt.save(5, **items, force=True)
    assert ckpt.latest_step() == 5


@quiet_orbax_errors
def test_mismatched_tree_raises_helpful_error(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [1])
    ckpt = checkpointers(tmp_path)
    wrong_shape = abstract(make_state())
    wrong_shape["params"]["dense"]["kernel"] = jax.ShapeDtypeStruct((5, 4), jnp.float32)
    with pytest.raises(CheckpointError, match=r"step 1.*\(5, 4\).*ckpt.init_from") as info:
        ckpt.restore(1, wrong_shape)
    assert str(tmp_path) in str(info.value)
    missing = abstract(make_state())
    missing["params"]["extra"] = jax.ShapeDtypeStruct((2,), jnp.float32)
    with pytest.raises(CheckpointError, match="start a new workdir"):
        ckpt.restore(1, missing)
    bad_encoder = abstract(make_encoder())
    bad_encoder["batch_stats"]["mean"] = jax.ShapeDtypeStruct((9,), jnp.float32)
    with pytest.raises(CheckpointError, match="same model config"):
        restore_encoder(str(tmp_path), bad_encoder)


@quiet_orbax_errors
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_corrupted_step_raises_and_others_restore(tmp_path, checkpointers, damage):
    save_steps(checkpointers(tmp_path), [1, 2])
    files = glob.glob(
        str(tmp_path / "checkpoints" / "1" / "state" / "**" / "d" / "*"), recursive=True
    )
    assert files
    for path in files:
        if damage == "truncate":
            with open(path, "r+b") as f:
                f.truncate(5)
        else:
            os.remove(path)
    ckpt = checkpointers(tmp_path)
    with pytest.raises(CheckpointError, match="step 1"):
        ckpt.restore(1, abstract(make_state()))
    state, data = ckpt.restore(2, abstract(make_state()))
    assert_trees_equal(state, make_state(2))
    assert data == {"epoch": 2}


def test_unreadable_config_raises(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [1])
    os.remove(tmp_path / "checkpoints" / "1" / "config" / "metadata")
    with pytest.raises(CheckpointError, match="Cannot read the run config"):
        read_config(str(tmp_path))


@quiet_orbax_errors
def test_partial_restore_reads_only_the_named_fields(tmp_path, checkpointers):
    """``partial=True`` (ckpt.init_from): params without the optimizer state."""
    save_steps(checkpointers(tmp_path), [2])
    mesh = make_mesh(-1)
    replicated = NamedSharding(mesh, P())
    target = {"params": abstract(make_params(), replicated)}
    state, data = checkpointers(tmp_path).restore(2, target, partial=True)
    assert_trees_equal(state, {"params": make_params(2)})
    assert all(x.sharding == replicated for x in jax.tree.leaves(state))
    assert data == {"epoch": 2}
    # Without partial=True the missing fields (opt_state, step, queue_ptr) are an error.
    with pytest.raises(CheckpointError, match="start a new workdir"):
        checkpointers(tmp_path).restore(2, target)
    wrong = {"params": abstract(make_params(), replicated)}
    wrong["params"]["dense"]["kernel"] = jax.ShapeDtypeStruct(
        (5, 4), jnp.float32, sharding=replicated
    )
    with pytest.raises(CheckpointError, match=r"\(5, 4\).*same model and method"):
        checkpointers(tmp_path).restore(2, wrong, partial=True)
    gc.collect()  # Orbax's abandoned reads are reported here (and silenced), not later


def test_async_save_then_wait(tmp_path, checkpointers):
    ckpt = checkpointers(tmp_path, async_save=True)
    assert ckpt.save(
        1,
        state=make_state(1),
        encoder=make_encoder(1),
        encoder_spec=SPEC,
        config=CONFIG,
        data={"i": 1},
    )
    ckpt.wait()
    assert resolve_step(str(tmp_path)) == 1
    state, data = ckpt.restore(1, abstract(make_state()))
    assert_trees_equal(state, make_state(1))
    assert data == {"i": 1}


def test_a_checkpoint_without_the_spec_item_reads_as_none(tmp_path, checkpointers):
    """A checkpoint without the item (``load_export`` then raises a ``CheckpointError``)."""
    save_steps(checkpointers(tmp_path), [1])
    assert read_encoder_spec(str(tmp_path), 1) == {**SPEC, "step": 1}
    shutil.rmtree(tmp_path / "checkpoints" / "1" / "encoder_spec")
    assert read_encoder_spec(str(tmp_path), 1) is None
    encoder, _ = restore_encoder(str(tmp_path), abstract(make_encoder()))
    assert_trees_equal(encoder, make_encoder(1))


@quiet_orbax_errors
def test_a_mismatch_names_the_first_differing_path_and_both_shapes(tmp_path, checkpointers):
    save_steps(checkpointers(tmp_path), [1])
    ckpt = checkpointers(tmp_path)
    wrong = abstract(make_state())
    wrong["params"]["dense"]["kernel"] = jax.ShapeDtypeStruct((5, 4), jnp.float32)
    wrong["params"]["dense"]["bias"] = jax.ShapeDtypeStruct((5,), jnp.float32)
    with pytest.raises(CheckpointError) as info:
        ckpt.restore(1, wrong)
    # bias precedes kernel: the first difference in the target's order.
    assert "differs at params/dense/bias: checkpoint (4,), model (5,)." in str(info.value)
    extra = abstract(make_state())
    extra["params"]["extra"] = jax.ShapeDtypeStruct((2,), jnp.float32)
    with pytest.raises(CheckpointError, match=r"params/extra: not in the checkpoint, model \(2,\)"):
        ckpt.restore(1, extra)
    fewer = abstract(make_state())
    del fewer["queue_ptr"]
    with pytest.raises(CheckpointError, match=r"queue_ptr: checkpoint \(3,\), not in the model"):
        ckpt.restore(1, fewer)
    # The parameters are compared before the batch statistics, whatever the key order.
    encoder = abstract(make_encoder())
    encoder["batch_stats"]["mean"] = jax.ShapeDtypeStruct((9,), jnp.float32)
    with pytest.raises(CheckpointError, match=r"batch_stats/mean: checkpoint \(4,\), model \(9,\)"):
        restore_encoder(str(tmp_path), encoder)
    encoder["params"]["dense"]["kernel"] = jax.ShapeDtypeStruct((8, 6), jnp.float32)
    with pytest.raises(CheckpointError) as info:
        restore_encoder(str(tmp_path), encoder)
    assert "differs at params/dense/kernel: checkpoint (8, 4), model (8, 6)." in str(info.value)


def test_first_difference_matches_nnx_states_with_saved_dicts():
    """Live trees name fields by attribute, int key or ``Variable.value``; saved ones by string
    keys: the same array must be found under both."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, width):
            self.layers = nnx.List([nnx.Linear(2, width, rngs=nnx.Rngs(0)) for _ in range(2)])

    live = nnx.state(Net(3), nnx.Param)
    saved = {
        "layers": {
            str(i): {"kernel": {"value": np.zeros((2, 3))}, "bias": {"value": np.zeros(3)}}
            for i in range(2)
        }
    }
    assert first_difference(saved, live) is None
    saved["layers"]["1"]["kernel"]["value"] = np.zeros((2, 4))
    assert first_difference(saved, live) == "layers/1/kernel: checkpoint (2, 4), model (2, 3)"
    assert first_difference(None, live) is None
    saved["layers"]["1"]["kernel"]["value"] = np.zeros((2, 3))
    saved["other"] = np.zeros(1)
    assert first_difference(saved, live) == "other: checkpoint (1,), not in the model"
    assert first_difference(saved, live, partial=True) is None


def test_a_full_filesystem_is_recognised_through_the_errors_it_is_wrapped_in():
    """What Orbax and tensorstore raise for ENOSPC (an OSError, or a ValueError carrying
    tensorstore's text, raised from another error); tests/programs/test_full_disk.py fills a
    real tmpfs."""
    assert checkpoint.is_no_space(OSError(28, "No space left on device"))
    wrapped = ValueError("RESOURCE_EXHAUSTED: Failed writing: ... [os_error_code='28']")
    assert checkpoint.is_no_space(wrapped)
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as e:
            raise RuntimeError("Save Finalize thread failed") from e
    except RuntimeError as e:
        assert checkpoint.is_no_space(e)
    assert not checkpoint.is_no_space(ValueError("shape mismatch"))
    assert not checkpoint.is_no_space(OSError(13, "Permission denied"))


def _save_best(arrays, step):
    def save(ckpt):
        ckpt.save(
            step,
            state=arrays,
            encoder=arrays,
            encoder_spec={},
            config={},
            data={"step": step},
            force=True,
        )

    return save


def test_best_checkpoint_keeps_the_best_top1_and_resumes_from_the_metrics(tmp_path):
    arrays = {"w": jnp.arange(3.0)}
    best = BestCheckpoint(tmp_path, 0, async_save=False)
    assert best.update(2, 50.0, _save_best(arrays, 2))
    assert not best.update(4, 50.0, _save_best(arrays, 4))  # a tie keeps the first
    assert best.update(6, 60.0, _save_best({"w": arrays["w"] + 1}, 6))
    np.testing.assert_array_equal(best.restore(arrays)["w"], [1.0, 2.0, 3.0])
    best.close()

    # A resume at step 4: the best so far (step 2) is read from metrics.jsonl, and the best
    # checkpoint written after step 4 is dropped (the resumed run writes it again).
    rows = [
        {"step": 2, "val_top1": 50.0},
        {"step": 4, "val_top1": 40.0},
        {"step": 6, "val_top1": 60.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    resumed = BestCheckpoint(tmp_path, 4, async_save=False)
    assert (resumed.step, resumed.top1) == (2, 50.0)
    assert not (tmp_path / BEST_DIR / "checkpoints" / "6").exists()
    with pytest.raises(CheckpointError, match="best validation step is 2"):
        resumed.restore(arrays)  # it holds no step 2 (replaced by step 6, keep=1): named
    resumed.close()
