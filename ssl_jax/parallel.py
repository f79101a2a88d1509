"""Device mesh, shardings and global batches (multi-host start-up: :mod:`ssl_jax.liveness`).

Everything is data parallel over one mesh axis, ``"data"``: state is replicated, the
batch is split along its first axis. Global-view ``jax.jit`` then makes every mean over
the batch (the loss, BatchNorm statistics, the negatives of a contrastive loss) a mean
over the global batch on every device and every process, with no explicit collectives.
"""

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = -1, *, devices=None) -> Mesh:
    """A 1-D ``("data",)`` mesh over the first ``num_devices`` of ``devices`` (default: all of
    ``jax.devices()``; -1: all of them), ordered by the physical topology.

    The device order comes from :func:`jax.experimental.mesh_utils.create_device_mesh` (on a
    TPU slice, neighbours along the data axis are neighbours on the interconnect). Devices of
    several slices (``device.slice_index``) form a hybrid mesh: the data axis runs over the
    devices of each slice first (ICI), then across slices (DCN). On CPU and GPU the order
    is ``jax.devices()``'s, so results there are unchanged. ``devices`` may be abstract TPU devices
    (``jax.experimental.topologies``) for ahead-of-time compilation.

    The axis type is pinned to ``Auto`` (JAX >= 0.9 defaults to Explicit, which rejects
    unannotated batch-sharded matmuls such as ``z @ z.T``).
    """
    devices = list(jax.devices() if devices is None else devices)
    if num_devices == -1:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"mesh.num_devices={num_devices}, but {len(devices)} device(s) are available; "
            "use -1 for all of them."
        )
    if num_devices != len(devices) and jax.process_count() > 1:
        raise ValueError("A multi-process run must use every device (mesh.num_devices=-1).")
    return Mesh(device_order(devices[:num_devices]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def device_order(devices: list) -> np.ndarray:
    """``devices`` as a 1-D array in the physical order a data axis should follow."""
    slices = sorted({getattr(d, "slice_index", 0) or 0 for d in devices})
    if len(slices) > 1:
        per_slice = len(devices) // len(slices)
        return mesh_utils.create_hybrid_device_mesh(
            (per_slice,), (len(slices),), devices, allow_split_physical_axes=True
        ).reshape(-1)
    return mesh_utils.create_device_mesh(
        (len(devices),), devices, allow_split_physical_axes=True
    ).reshape(-1)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over devices and processes."""
    if global_batch_size % mesh.size:
        raise ValueError(
            f"data.batch_size={global_batch_size} does not split over {mesh.size} devices; "
            f"use a multiple of {mesh.size}."
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Form global ``jax.Array``s, batch-sharded over ``mesh``, from this process's part."""
    sharding = batch_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }
