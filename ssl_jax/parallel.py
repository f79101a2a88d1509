"""Device mesh, shardings, multi-host start-up and global batches.

Everything is data parallel over one mesh axis, ``"data"``: state is replicated, the
batch is split along its first axis. Global-view ``jax.jit`` then makes every mean over
the batch (the loss, BatchNorm statistics, the negatives of a contrastive loss) a mean
over the global batch on every device and every process, with no explicit collectives.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Start ``jax.distributed`` for multi-host runs.

    With no arguments JAX detects the cluster (TPU pods, SLURM, Open MPI). On one machine,
    several CPU processes need all three arguments (``localhost:PORT``, N, i).
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def make_mesh(num_devices: int = -1) -> Mesh:
    """A 1-D ``("data",)`` mesh over the first ``num_devices`` devices (-1: all).

    The axis type is pinned to ``Auto`` (JAX >= 0.9 defaults to Explicit, which rejects
    unannotated batch-sharded matmuls such as ``z @ z.T``).
    """
    devices = jax.devices()
    if num_devices == -1:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"mesh.num_devices={num_devices}, but {len(devices)} device(s) are available; "
            "use -1 for all of them."
        )
    if num_devices != len(devices) and jax.process_count() > 1:
        raise ValueError("A multi-process run must use every device (mesh.num_devices=-1).")
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


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
