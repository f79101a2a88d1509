import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.parallel import (
    DATA_AXIS,
    batch_sharded,
    check_batch_size,
    global_batch,
    make_mesh,
    replicated,
)


def test_conftest_gives_eight_devices():
    assert jax.device_count() == 8


def test_make_mesh_all_devices():
    mesh = make_mesh(-1)
    assert mesh.axis_names == (DATA_AXIS,)
    assert mesh.size == 8
    assert list(mesh.devices) == jax.devices()
    assert mesh.axis_types == (AxisType.Auto,)


def test_make_mesh_subset():
    assert make_mesh(1).size == 1
    mesh = make_mesh(4)
    assert mesh.size == 4
    assert list(mesh.devices) == jax.devices()[:4]


@pytest.mark.parametrize("num_devices", [0, 9, -2])
def test_make_mesh_bad_count_says_how_many_exist(num_devices):
    with pytest.raises(ValueError, match=rf"num_devices={num_devices}, but 8 device"):
        make_mesh(num_devices)


def test_shardings():
    mesh = make_mesh(-1)
    assert replicated(mesh) == NamedSharding(mesh, P())
    assert batch_sharded(mesh) == NamedSharding(mesh, P(DATA_AXIS))


def test_check_batch_size():
    mesh = make_mesh(-1)
    check_batch_size(16, mesh)
    check_batch_size(8, mesh)
    with pytest.raises(ValueError, match="batch_size=12 .* multiple of 8"):
        check_batch_size(12, mesh)
    check_batch_size(12, make_mesh(4))


def test_global_batch_is_sharded_over_data_axis():
    mesh = make_mesh(-1)
    rng = np.random.default_rng(0)
    local = {
        "image": rng.normal(size=(16, 3, 2)).astype(np.float32),
        "label": np.arange(16, dtype=np.int32),
    }
    batch = global_batch(local, mesh)
    assert set(batch) == {"image", "label"}
    for key, value in batch.items():
        assert isinstance(value, jax.Array)
        assert value.sharding == NamedSharding(mesh, P(DATA_AXIS))
        assert value.dtype == local[key].dtype
        np.testing.assert_array_equal(np.asarray(value), local[key])
        shards = sorted(value.addressable_shards, key=lambda s: s.index[0].start)
        assert len(shards) == 8
        for i, shard in enumerate(shards):
            np.testing.assert_array_equal(np.asarray(shard.data), local[key][2 * i : 2 * i + 2])
