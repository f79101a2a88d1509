"""FSDP (``mesh.fsdp``): the split rule, the bytes per device, and 8 devices sharded ≡ 1 device.

The trajectories are those of tests/methods/test_devices.py, with every array of the state that
8 divides split over the devices (``min_size=0``, so that the tiny models are split too).
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.methods import get_method
from ssl_jax.optim import make_optimizer, make_schedule
from ssl_jax.parallel import make_mesh
from ssl_jax.sharding import DEFAULT_MIN_SIZE, bytes_per_device, fsdp_spec, replicate
from ssl_jax.train_step import make_init_fn, make_train_step, state_sharding
from tests.methods.test_byol import BYOL
from tests.methods.test_devices import STEPS, trajectory
from tests.methods.test_dino import DINO
from tests.methods.test_pretext import DEVICE_CONFIGS as PRETEXT
from tests.programs.tiny import tiny_pretrain_config

CONFIGS = {
    "simclr": {"method.name": "simclr"},
    "byol": {**BYOL, "optim.name": "sgd", "optim.base_learning_rate": 0.05},  # see test_byol
    "dino": DINO,
    "mae": {"method.name": "mae", **PRETEXT["mae"]},
}


def test_the_rule_splits_the_largest_dimension_the_devices_divide():
    assert fsdp_spec((3, 3, 64, 128), 8, min_size=0) == P(None, None, None, "data")
    assert fsdp_spec((128, 64), 8, min_size=0) == P("data")
    assert fsdp_spec((6, 40), 8, min_size=0) == P(None, "data")  # 6 does not divide
    assert fsdp_spec((64, 64), 8, min_size=0) == P("data")  # equals: the first
    assert fsdp_spec((7, 9), 8, min_size=0) == P()  # none divides
    assert fsdp_spec((), 8, min_size=0) == P()  # a scalar
    assert fsdp_spec((1024,), 8, min_size=2048) == P()  # small
    assert fsdp_spec((4096,), 1, min_size=0) == P()  # one device


def tiny_state(fsdp, num_devices=8, min_size=0, abstract=False, **overrides):
    """The initial state of the tiny SimCLR config (or its shapes only) and its sharding."""
    config = tiny_pretrain_config(**{"total_steps": STEPS, **overrides})
    mesh = make_mesh(num_devices)
    schedule = make_schedule(config, steps_per_epoch=1, total_steps=STEPS)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config, total_steps=STEPS)
    sharding = state_sharding(method, tx, mesh, fsdp=fsdp, min_size=min_size)
    init = make_init_fn(method, tx, mesh, sharding)
    return (jax.eval_shape(init, config.seed) if abstract else init(config.seed)), sharding


def test_fsdp_divides_the_state_per_device_by_the_device_count():
    """A SimCLR ResNet-18 state (11 M parameters, AdamW: 128 MiB): every array of the default
    fsdp_min_size or more split 8 ways; what stays whole (biases, norms, the step) is a small
    part, so a device holds within 10 % of 1/8."""
    model = {"model.backbone": "resnet18", "model.width": 64, "abstract": True}
    whole, whole_sharding = tiny_state(False, **model)
    split, split_sharding = tiny_state(True, min_size=DEFAULT_MIN_SIZE, **model)
    total = bytes_per_device(whole, whole_sharding)
    assert total == sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(whole)) > 2**26
    per_device = bytes_per_device(split, split_sharding)
    assert per_device <= 1.1 * total / 8, (per_device, total)


def test_the_devices_hold_the_shards_the_rule_states():
    whole, _ = tiny_state(False)
    split, sharding = tiny_state(True)
    assert bytes_per_device(split, sharding) < sum(x.nbytes for x in jax.tree.leaves(whole)) / 4
    for x, want in zip(jax.tree.leaves(split), jax.tree.leaves(sharding), strict=True):
        assert x.sharding == want
        for shard in x.addressable_shards:
            assert shard.data.shape == want.shard_shape(x.shape)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same values
    gathered = replicate(split, make_mesh(8))
    for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(gathered), strict=True):
        assert b.sharding.is_fully_replicated
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def check_fsdp_matches_one_device(name):
    config = tiny_pretrain_config(**{**CONFIGS[name], "total_steps": STEPS})
    one, eight = {}, {}
    one_losses, _ = trajectory(config, 1, keep=one)
    eight_losses, _ = trajectory(config, 8, fsdp=True, keep=eight)
    assert len(set(one_losses)) == STEPS
    np.testing.assert_allclose(eight_losses, one_losses, rtol=2e-5, atol=2e-6)
    # Every leaf of the final state (params, optimizer state, method state). atol: float32
    # reduction order alone moves BYOL's momentum traces by 2.1e-5 between 1 and 8 devices of
    # plain data parallelism (4.8e-5 with fsdp), on values of ~0.1.
    paths = jax.tree_util.tree_leaves_with_path(one["state"])
    for (path, a), b in zip(paths, jax.tree.leaves(eight["state"]), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # two compiled steps per method (20 to 45 s each); the pretraining program
@pytest.mark.parametrize("name", sorted(CONFIGS))  # runs fsdp in the default job
def test_fsdp_on_eight_devices_follows_one_device(name):
    check_fsdp_matches_one_device(name)


def test_without_fsdp_the_step_is_the_data_parallel_one():
    """``mesh.fsdp=False`` lowers to exactly the program of the replicated default."""
    config = tiny_pretrain_config(total_steps=STEPS)
    mesh = make_mesh(8)
    schedule = make_schedule(config, steps_per_epoch=1, total_steps=STEPS)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config, total_steps=STEPS)
    state = jax.eval_shape(make_init_fn(method, tx, mesh), config.seed)
    sharding = jax.sharding.NamedSharding(mesh, P("data"))
    batch = {
        "images": jax.ShapeDtypeStruct((16, 8, 8, 3), np.uint8, sharding=sharding),
        "labels": jax.ShapeDtypeStruct((16,), np.int32, sharding=sharding),
    }
    default = make_train_step(method, tx, schedule, mesh).lower(state, batch).as_text()
    off = state_sharding(method, tx, mesh, fsdp=False)
    assert make_train_step(method, tx, schedule, mesh, off).lower(state, batch).as_text() == default
    on = state_sharding(method, tx, mesh, fsdp=True, min_size=0)
    split = jax.eval_shape(make_init_fn(method, tx, mesh, on), config.seed)
    assert make_train_step(method, tx, schedule, mesh, on).lower(split, batch).as_text() != default


def test_activations_are_constrained_to_the_batch_split_only_inside_the_context():
    """The mechanism the fsdp step relies on: inside ``batch_sharded_activations(mesh)`` every
    ViT block's activations carry a batch-split sharding constraint; outside it (the data
    parallel default) the model lowers with none, and a batch the devices do not divide is
    left alone."""
    from flax import nnx

    from ssl_jax.models.vit import VisionTransformer
    from ssl_jax.sharding import batch_sharded_activations, constrain_batch

    mesh = make_mesh(8)
    model = VisionTransformer(
        img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(model)

    def forward(mesh):  # the context is entered while tracing, as the train step does
        def apply(params, x):
            with batch_sharded_activations(mesh):
                return nnx.merge(graphdef, params)(x)

        return jax.jit(apply)

    x = jax.ShapeDtypeStruct((16, 8, 8, 3), np.float32)
    constraints = lambda text: text.count("sharding_constraint")
    assert constraints(forward(None).lower(params, x).as_text()) == 0
    text = forward(mesh).lower(params, x).as_text()
    odd = forward(mesh).lower(params, jax.ShapeDtypeStruct((12, 8, 8, 3), np.float32))
    with batch_sharded_activations(mesh):
        assert constrain_batch(np.zeros((12, 4))).shape == (12, 4)
    # patch embedding + tokens, and per block: qkv, attention output (2), fc1, fc2, 2 residuals
    assert constraints(text) >= 2 + 2 * 7
    assert '[{"data"}' in text
    assert constraints(odd.as_text()) == 0
