"""Sharding annotations for arrays typed over Explicit mesh axes; no-ops everywhere else.

``jax.make_mesh`` gives Explicit axes by default (JAX >= 0.9): an array put on such a mesh
carries its sharding in its type (``jax.typeof(x).sharding``), and an operation whose result
sharding is ambiguous raises ``ShardingTypeError`` instead of letting XLA choose. Two patterns
of the losses and augmentations are ambiguous for a batch-sharded input: a contraction over the
batch (``z.T @ z``: the sum is split over devices) and a product of two batch-sharded operands
that keeps both batch axes (``z @ z.T``: both output axes would be split over one mesh axis).
A per-example ``vmap`` over images and keys also needs the keys split like the images.

Each helper here returns ``None`` or its input unchanged unless an argument is typed over
Explicit axes, so under Auto axes (:func:`ssl_jax.parallel.make_mesh`), in ``shard_map`` and on
one device the program, and its values, are exactly those written without them.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def sharding_of(x: jax.typing.ArrayLike) -> NamedSharding | None:
    """``x``'s sharding when it is typed over Explicit mesh axes, else None (Auto or Manual
    axes, no mesh, a NumPy array)."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    if not isinstance(sharding, NamedSharding):
        return None
    if AxisType.Explicit not in tuple(sharding.mesh.axis_types):
        return None
    return sharding


def replicated_result(*arrays: jax.typing.ArrayLike) -> NamedSharding | None:
    """``out_sharding`` for a contraction of ``arrays`` over a (possibly) sharded axis: the
    result replicated on their Explicit mesh (the partial sums are all-reduced), else None."""
    for x in arrays:
        sharding = sharding_of(x)
        if sharding is not None:
            return NamedSharding(sharding.mesh, P())
    return None


def leading_axis_result(x: jax.typing.ArrayLike, ndim: int = 2) -> NamedSharding | None:
    """``out_sharding`` of a rank-``ndim`` result whose first axis is ``x``'s first axis (the
    rows of ``x @ y.T``): split as ``x``'s first axis, the other axes replicated; else None."""
    sharding = sharding_of(x)
    if sharding is None:
        return None
    spec = tuple(sharding.spec) + (None,) * (jnp.ndim(x) - len(sharding.spec))
    first = spec[0] if spec else None
    return NamedSharding(sharding.mesh, P(first, *(None,) * (ndim - 1)))


def diagonal(x: jax.Array) -> jax.Array:
    """``jnp.diagonal(x)`` of a square matrix; as a gather along each row when ``x`` is typed over
    Explicit axes (there ``jnp.diagonal``'s gather has no unambiguous sharding), which picks the
    same elements."""
    if sharding_of(x) is None:
        return jnp.diagonal(x)
    rows = jnp.arange(x.shape[0])[:, None]
    return jnp.take_along_axis(x, rows, axis=-1)[:, 0]


def take(a: jax.Array, indices: jax.Array) -> jax.Array:
    """``jnp.take(a, indices)`` of a 1-D ``a`` (a lookup table); laid out as ``indices`` when they
    are typed over Explicit axes (there the gather's sharding is ambiguous)."""
    sharding = sharding_of(indices)
    if sharding is None:
        return jnp.take(a, indices)
    return a.at[indices].get(out_sharding=sharding)


def split_views(x: jax.Array, num_views: int) -> jax.Array:
    """``(V * N, ...)`` view-major rows as ``(V, N, ...)``; when ``x`` is typed over Explicit
    axes the ``N`` axis is split as ``x``'s first axis was (there the reshape needs it said)."""
    shape = (num_views, x.shape[0] // num_views, *x.shape[1:])
    sharding = leading_axis_result(x, x.ndim)
    if sharding is None:
        return jnp.reshape(x, shape)
    spec = P(None, sharding.spec[0], *(None,) * (x.ndim - 1))
    return jax.lax.reshape(x, shape, out_sharding=NamedSharding(sharding.mesh, spec))


def like_leading_axis(x: jax.Array, like: jax.typing.ArrayLike) -> jax.Array:
    """``x`` resharded so its first axis is split as ``like``'s first axis (the rest
    replicated), when ``like`` is typed over Explicit axes; else ``x`` unchanged. For keys
    ``vmap``-ed with a batch of images, one key per image."""
    sharding = leading_axis_result(like, jnp.ndim(x))
    if sharding is None or jax.typeof(x).sharding == sharding:
        return x
    return jax.sharding.reshard(x, sharding)
