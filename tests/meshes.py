"""Running a function on a batch split over the 8 test devices, under each kind of mesh axis.

``jax.make_mesh`` gives Explicit axes by default (JAX >= 0.9); :func:`ssl_jax.parallel.make_mesh`
pins Auto. Library functions must give one device's values under both, with the inputs put on
the mesh only (``jax.device_put``) or also under the current mesh (``jax.set_mesh``), as the
JAX documentation on explicit sharding teaches.
"""

import contextlib

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_KINDS = ("explicit", "explicit_set_mesh", "auto")


def batch_mesh(kind: str) -> jax.sharding.Mesh:
    """A 1-D ``("data",)`` mesh over the 8 devices with Explicit or Auto axes."""
    axis_type = AxisType.Auto if kind == "auto" else AxisType.Explicit
    return jax.make_mesh((8,), ("data",), axis_types=(axis_type,))


def run_sharded(fn, args, batch_axes, kind: str):
    """``jax.jit(fn)(*args)`` with ``args[i]`` split over the devices along ``batch_axes[i]``
    (None: replicated) on a :func:`batch_mesh` of ``kind``."""
    mesh = batch_mesh(kind)

    def put(x, axis):
        if axis is None or not hasattr(x, "ndim"):
            return jax.device_put(x, NamedSharding(mesh, P())) if hasattr(x, "ndim") else x
        spec = [None] * x.ndim
        spec[axis] = "data"
        return jax.device_put(x, NamedSharding(mesh, P(*spec)))

    sharded = [put(x, axis) for x, axis in zip(args, batch_axes, strict=True)]
    context = jax.set_mesh(mesh) if kind == "explicit_set_mesh" else contextlib.nullcontext()
    with context:
        return jax.jit(fn)(*sharded)
